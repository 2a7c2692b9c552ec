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
# Of the {glue:text}`n_tests` tests of the paper's claims under this page's profile,
# {glue:text}`verdict_counts`, after Holm's correction over all of them.
# {glue:text}`conclusion_scope`
#
# ```{admonition} What produced this page
# :class: note dropdown
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student` · teacher {glue:text}`box_teacher` · target subset {glue:text}`box_target_subset` ·
# inits {glue:text}`box_inits` · training {glue:text}`box_training` · {glue:text}`box_KD`.
#
# Rebuild this page: {glue:text}`box_reproduce`
# ```
#
# Every measurement is read from the results store of its profile
# (`results/<profile>/`); nothing is typed in by hand. The words follow one rule: on
# this page's data a claim {glue:text}`words_verdicts`.

# %% tags=["parameters", "remove-cell"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from kdmed.claims import measure
from kdmed.inference import REAL, STAND_IN
from kdmed.page import open_chapter, save_table, words
from kdmed.paper import CITATION, choices_table
from kdmed.profiles import available_profiles
from kdmed.study import Study

CHAPTER = "06_conclusions"
study = open_chapter(globals(), CHAPTER)
here = measure(study)
others = {name: measure(Study.from_profile(name)) for name in available_profiles() if name != study.profile}

# %% [markdown]
# ## The claims, under this profile
#
# One row per claim of the paper; each cell lists the claim's tests with their estimate,
# 95 % interval and verdict. Download: {download}`claims.csv <tables/06_conclusions/claims.csv>`,
# {download}`tests.csv <tables/06_conclusions/tests.csv>`.

# %% tags=["hide-input"]
claims = here.claims.drop(columns=["key"]).set_index("claim")
save_table(claims, CHAPTER, "claims", study.profile)
tests = here.tests.set_index(["claim", "test"])
save_table(tests, CHAPTER, "tests", study.profile)
counts = here.tests["verdict"].value_counts()
glue("n_tests", len(here.tests), display=False)
vocabulary = REAL if study.real_data else STAND_IN
tally = ", ".join(f"{int(counts.get(w, 0))} {w.replace(' on the stand-in', '').replace('holds', 'hold')}" for w in vocabulary)
where = words(study)["where"]
glue("verdict_counts", f"{tally} {where}", display=False)
glue("intro_verdicts", f"Of the {len(here.tests)} tests of the paper's claims under the {study.profile} profile: "
                       f"{tally} {where}, after Holm's correction.", display=False)
glue("conclusion_scope",
     f"These tests ran on real images ({study.describe()['data']}) at this profile's sizes; the paper's sizes and "
     "architectures are the full profile's." if study.real_data else
     "None of them is a test of the paper: that needs its real data (the `full` or `medmnist` profile), and this "
     "page's column for it stays \"not tested here\" until a build on real data fills it.", display=False)
glue("intro_data", f"{study.describe()['data']}, profile {study.profile}.", display=False)
glue("intro_scope", "These are results on real images at this profile's sizes." if study.real_data else
     "These are results on synthetic images: they say whether an effect holds there, never whether the paper is "
     "reproduced.", display=False)
with pd.option_context("display.max_colwidth", None):
    display(claims)

# %% [markdown]
# ## Every test, with Holm's correction

# %% tags=["hide-input"]
display(tests.drop(columns=["profile"]).style.format("{:+.2f}", subset=["estimate", "low", "high"])
        .format("{:.3f}", subset=["p", "p (Holm)"], na_rep="—"))

# %% [markdown]
# ```{glue:figure} fig_verdicts
# :name: fig-verdicts
#
# How many tests of each claim hold, are opposite or are unresolved, per profile whose
# results are in this checkout (profiles without results are listed as not run).
# ```

# %% tags=["hide-input"]
everything = pd.concat([here.tests] + [m.tests for m in others.values()], ignore_index=True)
not_run = [name for name, m in others.items() if m.tests.empty]
summary = everything.groupby(["profile", "verdict"]).size().rename("tests").reset_index()
fig, ax = plt.subplots(figsize=(7, 3.2))
sns.barplot(data=summary, y="profile", x="tests", hue="verdict", ax=ax, orient="h")
ax.set_title("verdicts per profile" + (f" (not run: {', '.join(not_run)})" if not_run else ""))
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
glue("fig_verdicts", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## The choices we had to make
#
# The paper's full text and code are not available; these are the choices this book
# makes where the abstract is silent. {glue:text}`citation`

# %% tags=["hide-input"]
glue("citation", "Paper: " + CITATION, display=False)
with pd.option_context("display.max_colwidth", None):
    display(choices_table().set_index("unknown in the paper"))
