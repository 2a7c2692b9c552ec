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
# # Teacher
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: content lands with the core library.
# The teacher is trained on a large source split; what is real here already is
# that split: the NIH ChestX-ray14 table divided into train/validation/test by
# *patient*, so that no patient is on two sides.

# %% tags=["parameters"]
profile = "default"
seed = 0
split_fractions = [0.7, 0.1, 0.2]

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from myst_nb import glue

from kdmed.profiles import profile_description

glue("profile_name", profile, display=False)
glue("profile_description", profile_description(profile), display=False)

from kdmed.data.real_tables import real_table
from kdmed.data.subsets import split_by_patient

# %% [markdown]
# With seed {glue:text}`split_seed`, the teacher's training split holds
# {glue:text}`train_patients:,d` patients ({glue:text}`train_images:,d` images); the
# largest difference in a finding's prevalence between the train and test splits is
# {glue:text}`max_gap:.2%`.

# %%
nih = real_table("nih")
findings = nih["Finding Labels"].str.get_dummies(sep="|").drop(columns="No Finding")
parts = split_by_patient(nih["Patient ID"].to_numpy(), split_fractions, seed=seed)
names = ["train", "val", "test"][: len(parts)]
prevalence = pd.DataFrame({name: findings.iloc[idx].mean() for name, idx in zip(names, parts)})

glue("split_seed", seed, display=False)
glue("train_patients", int(nih["Patient ID"].iloc[parts[0]].nunique()), display=False)
glue("train_images", len(parts[0]), display=False)
glue("max_gap", float((prevalence["train"] - prevalence[names[-1]]).abs().max()), display=False)

long = prevalence.reset_index(names="finding").melt(id_vars="finding", var_name="split", value_name="prevalence")
fig, ax = plt.subplots(figsize=(8, 5))
sns.barplot(data=long, y="finding", x="prevalence", hue="split", ax=ax)
ax.set_title("NIH ChestX-ray14 finding prevalence per patient-level split")
fig.tight_layout()
plt.show()
