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
# # Distillation on small data
#
# ```{admonition} Run profile
# :class: note
# This page was executed with the **{glue:text}`profile_name`** profile
# ({glue:text}`profile_description`).
# ```
#
# Placeholder chapter: content lands with the core library.
# The paper's students learn from small target sets: CheXpert n = 5k and
# ChestX-ray8 n = 5.6k. What is real here already is how few positive examples a
# rare label keeps in such a sample, which bounds how precisely its AUC can be
# measured.

# %% tags=["parameters"]
profile = "default"
seed = 0
subset_sizes = [500, 1000, 2000, 5000]
repeats = 3

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from myst_nb import glue

from kdmed.profiles import profile_description

glue("profile_name", profile, display=False)
glue("profile_description", profile_description(profile), display=False)

from kdmed.data.real_tables import real_table

# %% [markdown]
# In a random CheXpert sample of {glue:text}`largest_n:,d` images, the rarest
# observation, *{glue:text}`rarest_label`*, has {glue:text}`rarest_positives:.0f`
# positive images on average ({glue:text}`repeats` draws; uncertain counted as negative).

# %%
chexpert = real_table("chexpert")
labels = list(chexpert.columns[5:])
positive = (chexpert[labels] == 1.0).to_numpy()
rng = np.random.default_rng(seed)
rows = []
for n in subset_sizes:
    for r in range(repeats):
        pick = rng.choice(len(chexpert), size=min(n, len(chexpert)), replace=False)
        for label, count in zip(labels, positive[pick].sum(axis=0)):
            rows.append({"n": n, "repeat": r, "observation": label, "positives": int(count)})
counts = pd.DataFrame(rows)
largest = counts[counts["n"] == max(subset_sizes)].groupby("observation")["positives"].mean()

glue("largest_n", int(max(subset_sizes)), display=False)
glue("rarest_label", largest.idxmin(), display=False)
glue("rarest_positives", float(largest.min()), display=False)
glue("repeats", repeats, display=False)

fig, ax = plt.subplots(figsize=(8, 5))
sns.lineplot(data=counts, x="n", y="positives", hue="observation", marker="o", ax=ax, legend="brief")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("images in the sample")
ax.set_ylabel("positive images")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()
