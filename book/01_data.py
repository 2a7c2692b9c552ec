# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Data
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: the datasets, example images and patient-level splits land
# here with the core library. What it shows already is real: the label statistics
# of the official CheXpert and NIH ChestX-ray14 label tables.

# %% tags=["parameters"]
profile = "default"
# "synthetic" (offline default) or "real" (the datasets at the paths below)
data_source = "synthetic"
chexpert_root = ""
nih_root = ""
dr_root = ""
# rows of the CheXpert table to read; 0 reads all of them
table_rows = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from myst_nb import glue

from kdmed.data.real_tables import real_table
from kdmed.profiles import profile_description, require_paths

glue("profile_name", profile, display=False)
glue("profile_description", profile_description(profile), display=False)

if data_source == "real":
    require_paths(
        {"chexpert_root": chexpert_root, "nih_root": nih_root, "dr_root": dr_root},
        hint="Set them in book/profiles/full.yml or with --param 01_data.chexpert_root=/path ...",
    )
elif data_source != "synthetic":
    raise ValueError(f"data_source must be 'synthetic' or 'real', got {data_source!r}")

# %% [markdown]
# ## CheXpert labels
#
# CheXpert marks each of its 14 observations as positive (1), negative (0),
# uncertain (-1) or leaves it blank. Of the {glue:text}`n_chexpert:,d` images read
# from the label table, {glue:text}`top_share:.1%` are positive for the most common
# observation, *{glue:text}`top_label`*.

# %%
chexpert = real_table("chexpert")
if table_rows:
    chexpert = chexpert.head(table_rows)
labels = list(chexpert.columns[5:])
states = {"positive": 1.0, "uncertain": -1.0, "negative": 0.0}
shares = pd.DataFrame({name: (chexpert[labels] == code).mean() for name, code in states.items()})
shares["blank"] = chexpert[labels].isna().mean()
shares = shares.sort_values("positive", ascending=False)

glue("n_chexpert", len(chexpert), display=False)
glue("top_label", shares.index[0], display=False)
glue("top_share", float(shares["positive"].iloc[0]), display=False)

long = shares.reset_index(names="observation").melt(id_vars="observation", var_name="label", value_name="share")
fig, ax = plt.subplots(figsize=(8, 5))
sns.barplot(data=long, y="observation", x="share", hue="label", ax=ax)
ax.set_xlabel("share of images")
ax.set_title(f"CheXpert label states ({len(chexpert):,} images)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## NIH ChestX-ray14 findings
#
# The NIH table lists the findings of each image in one `|`-separated column.
# {glue:text}`nih_no_finding:.1%` of its {glue:text}`n_nih:,d` images carry no finding.

# %%
nih = real_table("nih")
findings = nih["Finding Labels"].str.get_dummies(sep="|")
glue("n_nih", len(nih), display=False)
glue("nih_no_finding", float(findings["No Finding"].mean()), display=False)
counts = findings.drop(columns="No Finding").sum().sort_values(ascending=False)
fig, ax = plt.subplots(figsize=(8, 4))
sns.barplot(x=counts.values, y=counts.index, color="tab:blue", ax=ax)
ax.set_xlabel("images with the finding")
fig.tight_layout()
plt.show()
