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
# # Cross-domain teachers
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: content lands with the core library.
# A teacher from another chest X-ray source teaches a student whose labels may
# not match its own. What is real here already is how the label sets of CheXpert
# and NIH ChestX-ray14 overlap, and how differently common the shared findings are.

# %% tags=["parameters"]
profile = "default"

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
# {glue:text}`n_shared` findings carry the same name in both tables; the largest
# prevalence ratio between the two sources among them is {glue:text}`max_ratio:.1f`x.

# %%
chexpert = real_table("chexpert")
nih = real_table("nih")
chexpert_labels = list(chexpert.columns[5:])
nih_findings = nih["Finding Labels"].str.get_dummies(sep="|")
# NIH calls pleural effusion "Effusion"; everything else is matched by name
aliases = {"Pleural Effusion": "Effusion"}
shared = [label for label in chexpert_labels if aliases.get(label, label) in nih_findings.columns]
table = pd.DataFrame(
    {
        "CheXpert": [(chexpert[label] == 1.0).mean() for label in shared],
        "NIH": [nih_findings[aliases.get(label, label)].mean() for label in shared],
    },
    index=shared,
)
ratio = (table.max(axis=1) / table.min(axis=1)).max()
glue("n_shared", len(shared), display=False)
glue("max_ratio", float(ratio), display=False)

fig, ax = plt.subplots(figsize=(6, 6))
sns.scatterplot(data=table, x="NIH", y="CheXpert", ax=ax)
for label, row in table.iterrows():
    ax.annotate(label, (row["NIH"], row["CheXpert"]), fontsize=8)
lim = float(table.to_numpy().max()) * 1.1
ax.plot([0, lim], [0, lim], color="grey", linestyle="--", linewidth=1)
ax.set_title("prevalence of the shared findings")
fig.tight_layout()
plt.show()
