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
# # Teachers and initialisations
#
# The headline teacher learned from {glue:text}`headline_pool:,d` pool images
# ({glue:text}`headline_ratio:.0f` × the target subset; the paper's teachers saw 20–45 ×). On the
# target's test set it reaches a macro-AUC of **{glue:text}`teacher_auc:.3f`**
# (95 % CI {glue:text}`teacher_low:.3f`–{glue:text}`teacher_high:.3f`, seeds and patients
# resampled), against {glue:text}`transfer_near_auc:.3f` for transfer learning from the
# near init and {glue:text}`transfer_far_auc:.3f` from the far one: an advantage of
# **{glue:text}`advantage_near:+.1f` AUC points** over the near baseline
# ({glue:text}`advantage_near_low:+.1f` to {glue:text}`advantage_near_high:+.1f`). Every
# teacher and init trains until its validation AUC stops improving, under a cap:
# {glue:text}`n_capped` of {glue:text}`n_trained` ran to their epoch cap.
#
# ```{admonition} What produced this page
# :class: note dropdown
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student` · teacher {glue:text}`box_teacher` · target subset {glue:text}`box_target_subset` ·
# inits {glue:text}`box_inits` · training {glue:text}`box_training` · {glue:text}`box_KD` ·
# computed with {glue:text}`box_computed`.
#
# Rebuild this page: {glue:text}`box_reproduce`
# ```
#
# A teacher is worth learning from only if it knows more about the target than the
# student's starting point: the teacher's **advantage** is its AUC on the target's test
# set minus that of the transfer-learning baseline. The teacher-strength sweep of the
# next chapter maps how the gain of distillation follows it.

# %% tags=["parameters", "remove-cell"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from kdmed import analysis, experiments, inference, plots
from kdmed.page import open_chapter, run_grids, save_table
from kdmed.runner import evaluate_on

CHAPTER = "02_teacher"
study = open_chapter(globals(), CHAPTER)
store = study.store()
networks = experiments.teachers(study)
baselines = experiments.headline(study).select(arm="transfer@near") + experiments.headline(study).select(arm="transfer@far")
run_grids(study, networks, baselines)

# %% [markdown]
# ## Every teacher and init
#
# Teachers learn from the target domain's pool (never from a target subset's patients);
# the inits from their own domain. "Last slope" is the validation AUC's slope over the
# last epochs (AUC per epoch): near zero means the curve had flattened when training
# stopped. Download: {download}`teachers.csv <tables/02_teacher/teachers.csv>`.

# %% tags=["hide-input"]
summary = analysis.training_summary(store, networks)
target_auc = []
for cfg, lab in networks:
    if lab["role"] == "teacher":
        s = evaluate_on(cfg, store, study.target_data())
        target_auc.append(analysis.macro_auc(s["y_true"], s["y_score"]))
    else:
        target_auc.append(np.nan)  # another domain or institution: its own test set is in "test AUC"
summary["AUC on the target test set"] = target_auc
shown = summary[["name", "role", "pool", "seed", "epochs run", "cap", "best epoch", "stopped early",
                 "last slope (AUC/epoch)", "test AUC", "AUC on the target test set", "train seconds"]].set_index("name")
save_table(shown, CHAPTER, "teachers", study.profile)
glue("n_capped", int(summary["at cap"].sum()), display=False)
glue("n_trained", len(summary), display=False)
display(shown.style.format({"last slope (AUC/epoch)": "{:+.4f}", "test AUC": "{:.3f}",
                            "AUC on the target test set": "{:.3f}", "train seconds": "{:.0f}"}, na_rep="—"))

# %% [markdown]
# ```{glue:figure} fig_curves
# :name: fig-teacher-curves
#
# Validation macro-AUC per epoch of every teacher (by pool size) and init. Each curve
# ends where early stopping ended the run.
# ```

# %% tags=["hide-input"]
hist = analysis.histories(store, networks)
hist["network"] = hist["role"] + ", pool " + hist["pool"].astype(str) + ", seed " + hist["seed"].astype(str)
fig = plots.history_curves(hist, ["val_macro_auc"], hue="network", title="validation macro-AUC per epoch")
glue("fig_curves", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## The headline teacher against transfer learning, on the target
#
# The headline teachers ({glue:text}`n_teachers` seeds) and the transfer baselines
# ({glue:text}`n_student_seeds` seeds each) are scored on the same test images; intervals resample the seeds, then
# the test patients ({glue:text}`n_boot_glued` resamples).
# Download: {download}`advantage.csv <tables/02_teacher/advantage.csv>`.

# %% tags=["hide-input"]
arms, test = analysis.grouped_scores(store, baselines)
arms["teacher"] = analysis.teacher_scores(study, store, study.seeds)
bs = analysis.bootstrap(study, arms, test)
levels = analysis.arm_table(bs, ["teacher", "transfer@near", "transfer@far"])
advantage = pd.DataFrame([{"baseline": b, **inference.contrast(bs, "teacher", b)}
                          for b in ("transfer@near", "transfer@far")]).set_index("baseline")
save_table(advantage, CHAPTER, "advantage", study.profile)
for key, value in (("teacher_auc", levels.loc["teacher", "macro-AUC"]), ("teacher_low", levels.loc["teacher", "low"]),
                   ("teacher_high", levels.loc["teacher", "high"]),
                   ("transfer_near_auc", levels.loc["transfer@near", "macro-AUC"]),
                   ("transfer_far_auc", levels.loc["transfer@far", "macro-AUC"]),
                   ("advantage_near", advantage.loc["transfer@near", "estimate"]),
                   ("advantage_near_low", advantage.loc["transfer@near", "low"]),
                   ("advantage_near_high", advantage.loc["transfer@near", "high"])):
    glue(key, float(value), display=False)
glue("headline_pool", study.teacher_pool_n, display=False)
glue("headline_ratio", study.teacher_pool_n / study.target_n, display=False)
glue("n_teachers", len(study.teacher_seeds), display=False)
glue("n_student_seeds", len(study.seeds), display=False)
glue("n_boot_glued", study.n_boot, display=False)
display(levels.style.format("{:.3f}", subset=["macro-AUC", "low", "high"]))
display(advantage.rename(columns={"estimate": "advantage (AUC points)"})
        .style.format("{:+.2f}", subset=["advantage (AUC points)", "low", "high"]).format("{:.3f}", subset=["p_value"]))

# %% [markdown]
# ```{glue:figure} fig_per_class
# :name: fig-teacher-per-class
#
# Per-class AUC of the first headline teacher on the target's test set (95 % CI,
# patients resampled), beside the near transfer baseline of seed 0.
# ```

# %% tags=["hide-input"]
first = study.teacher_for(study.seeds[0])
t_scores = evaluate_on(first, store, study.target_data())
_, t_table = analysis.evaluate_with_ci(t_scores, n_boot=study.n_boot)
near0 = baselines.select(arm="transfer@near", seed=study.seeds[0]).configs[0]
n_scores = {**t_scores, "y_score": store.load_scores(near0)["y_score"]}
_, n_table = analysis.evaluate_with_ci(n_scores, n_boot=study.n_boot)
per_class = pd.concat([t_table.assign(model="teacher"), n_table.assign(model="transfer (near), seed 0")])
save_table(per_class.set_index(["model", "class"]), CHAPTER, "per_class", study.profile)
fig = plots.forest_plot(per_class, hue="model", title="per-class AUC on the target test set (95% CI)")
glue("fig_per_class", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_roc
# :name: fig-teacher-roc
#
# ROC curves of the first headline teacher on the target's test set, per class.
# ```

# %% tags=["hide-input"]
fig = plots.roc_curves(t_scores["y_true"], t_scores["y_score"], t_scores["classes"],
                       title="headline teacher on the target test set")
glue("fig_roc", fig, display=False)
plt.close(fig)
