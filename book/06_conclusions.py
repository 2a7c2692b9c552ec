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
# ```{admonition} What produced this page
# :class: note
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student`, teacher {glue:text}`box_teacher` · small target subset
# {glue:text}`box_target_subset` · teacher / transfer-init sources {glue:text}`box_teacher_init_source` ·
# seeds {glue:text}`box_seeds` · epochs {glue:text}`box_epochs` · {glue:text}`box_KD`.
# ```
#
# Every claim of the paper's abstract, beside what this book measured. The measurements
# are read from the results store of each profile (`results/<profile>/`); a profile whose
# runs are not there is marked "not run under this profile" — nothing is typed in by
# hand. A verdict is **reproduced** when the 95 % interval over seeds lies above zero,
# **contradicted** when it lies below, **inconclusive** otherwise.

# %% tags=["parameters"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from kdmed.claims import measure_claims
from kdmed.paper import CITATION, choices_table
from kdmed.profiles import available_profiles
from kdmed.study import Study, open_chapter

study = open_chapter(globals())
studies = {study.profile: study}
for name in available_profiles():
    studies.setdefault(name, Study.from_profile(name))
claims = pd.concat([measure_claims(s) for s in studies.values()], ignore_index=True)
here = claims[claims["profile"] == study.profile]
glue("n_claims", int(here["claim"].nunique()), display=False)
glue("n_reproduced", int((here["verdict"] == "reproduced").sum()), display=False)
glue("n_contradicted", int((here["verdict"] == "contradicted").sum()), display=False)
glue("n_inconclusive", int(here["verdict"].str.startswith("inconclusive").sum()), display=False)

# %% [markdown]
# ## The claims, under this profile
#
# Of the paper's {glue:text}`n_claims` claims, under this page's profile
# {glue:text}`n_reproduced` are reproduced, {glue:text}`n_contradicted` contradicted and
# {glue:text}`n_inconclusive` inconclusive (the rest were not measured).

# %%
with pd.option_context("display.max_colwidth", None):
    display(here[["paper says", "paper's figure", "our measurement", "verdict", "note"]].set_index("paper says"))

# %% [markdown]
# ## Verdicts under every profile
#
# Profiles whose results are in the store of this checkout count; the others are marked.

# %%
counts = claims.assign(verdict=claims["verdict"].str.replace(r" \(.*\)$", "", regex=True))
counts = counts.groupby(["profile", "verdict"]).size().rename("claims").reset_index()
fig, ax = plt.subplots(figsize=(7, 3.4))
sns.barplot(data=counts, y="profile", x="claims", hue="verdict", ax=ax, orient="h")
ax.set_title("verdicts per profile")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()
with pd.option_context("display.max_colwidth", 80):
    display(claims[["claim", "profile", "setting", "verdict", "our measurement"]])

# %% [markdown]
# ## The choices we had to make
#
# The paper's full text and code are not available; these are the choices this book
# makes where the abstract is silent.

# %%
with pd.option_context("display.max_colwidth", None):
    display(choices_table().set_index("unknown in the paper"))
print("Paper:", CITATION)
