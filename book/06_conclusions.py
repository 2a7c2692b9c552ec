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
# # Conclusions
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: content lands with the core library.
# This page will set this book's results beside the paper's claims. It does not
# yet have results of its own. What is real here already: how small the paper's
# target samples are compared with the datasets they come from.

# %% tags=["parameters"]
profile = "default"
# the paper's target sample sizes (from its abstract)
paper_samples = {"CheXpert": 5000, "NIH ChestX-ray8": 5600}

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from myst_nb import glue

from kdmed.profiles import profile_description

glue("profile_name", profile, display=False)
glue("profile_description", profile_description(profile), display=False)

from kdmed.data.real_tables import real_table

# %% [markdown]
# The paper's CheXpert sample is {glue:text}`chexpert_fraction:.1%` of the
# {glue:text}`chexpert_rows:,d` images in the CheXpert label table, and its
# ChestX-ray8 sample {glue:text}`nih_fraction:.1%` of the NIH table.

# %%
sizes = {"CheXpert": len(real_table("chexpert")), "NIH ChestX-ray8": len(real_table("nih"))}
table = pd.DataFrame(
    {"dataset": list(sizes), "images": list(sizes.values()), "paper sample": [paper_samples[k] for k in sizes]}
)
table["fraction"] = table["paper sample"] / table["images"]
glue("chexpert_rows", int(sizes["CheXpert"]), display=False)
glue("chexpert_fraction", float(table["fraction"].iloc[0]), display=False)
glue("nih_fraction", float(table["fraction"].iloc[1]), display=False)

fig, ax = plt.subplots(figsize=(6, 3))
sns.barplot(data=table, x="fraction", y="dataset", ax=ax)
ax.set_xlabel("paper's target sample / images in the table")
fig.tight_layout()
plt.show()
