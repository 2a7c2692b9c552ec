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
# # Regularization and convergence
#
# At its best epoch a student trained from scratch scores {glue:text}`gap_scratch:.1f` AUC
# points higher on its own (un-augmented) training images than on validation; taught by
# the teacher (kd), {glue:text}`gap_kd:.1f` points. It reaches 95 % of its best
# validation AUC after {glue:text}`conv_scratch:.1f` epochs from scratch and
# {glue:text}`conv_kd:.1f` with the teacher. {glue:text}`n_capped` of
# {glue:text}`n_runs` headline runs reached their epoch cap. The best cell of the
# T × α grid, picked on validation, is T = {glue:text}`best_T`, α = {glue:text}`best_alpha`.
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
# The paper's v1 studies how the student **converges** and argues that the teacher
# **regularizes** it. Every headline run trained until its validation AUC stopped
# improving, so its whole curve is here; the training side of each gap is measured like
# the validation side, in eval mode on a fixed subset of the run's own training images
# without augmentation. Convergence is counted as the epochs to reach 95 % of the run's
# best validation AUC, which the epoch cap does not censor.

# %% tags=["parameters", "remove-cell"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
from IPython.display import display
from myst_nb import glue

from kdmed import analysis, experiments, plots
from kdmed.page import open_chapter, run_grids, save_table

CHAPTER = "05_regularization"
study = open_chapter(globals(), CHAPTER)
store = study.store()
headline = experiments.headline(study)
grid = experiments.temperature_alpha(study)
run_grids(study, headline, grid)

# %% [markdown]
# ## Training and validation curves
#
# Means over {glue:text}`n_seeds` seeds (bands from the lowest to the highest seed) of four arms; each run's curve
# stops at its own last epoch.

# %% tags=["hide-input"]
shown = ["scratch", "kd", "transfer@near", "transfer+kd@near"]
part = headline.select(arm=shown[0])
for arm in shown[1:]:
    part = part + headline.select(arm=arm)
hist = analysis.histories(store, part)
fig = plots.history_curves(hist, ["train_eval_macro_auc", "val_macro_auc", "train_eval_loss", "val_loss"],
                           hue="arm", title="eval-mode training subset vs validation, per epoch")
glue("fig_curves", fig, display=False)
plt.close(fig)
glue("n_seeds", len(study.seeds), display=False)

# %% [markdown]
# ```{glue:figure} fig_curves
# :name: fig-reg-curves
#
# Macro-AUC and task loss per epoch on the fixed training subset (eval mode, no
# augmentation) and on the validation split.
# ```
#
# ## Generalization gap and convergence, per arm
#
# Download: {download}`training.csv <tables/05_regularization/training.csv>`.

# %% tags=["hide-input"]
summary = analysis.training_summary(store, headline)
per_arm = summary.groupby("arm", sort=False)[["gap at best (AUC points)", "loss gap at best",
                                              "epochs to 95 % of best", "best epoch", "epochs run",
                                              "test AUC"]].mean()
save_table(per_arm, CHAPTER, "training", study.profile)
display(per_arm.style.format("{:.2f}"))
for arm, key in (("scratch", "scratch"), ("kd", "kd")):
    glue(f"gap_{key}", float(per_arm.loc[arm, "gap at best (AUC points)"]), display=False)
    glue(f"conv_{key}", float(per_arm.loc[arm, "epochs to 95 % of best"]), display=False)
capped = analysis.capped_runs(summary)
glue("n_capped", len(capped), display=False)
glue("n_runs", len(summary), display=False)
if len(capped):
    display(capped[["name", "epochs run", "cap", "best epoch"]])
fig = plots.forest_plot(per_arm.reset_index().assign(low=per_arm["gap at best (AUC points)"].values,
                                                     high=per_arm["gap at best (AUC points)"].values),
                        label="arm", estimate="gap at best (AUC points)", reference=0.0,
                        xlabel="train − validation macro-AUC at the best epoch (AUC points)",
                        title="generalization gap (mean over seeds)")
glue("fig_gap", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_gap
# :name: fig-gap
#
# The generalization gap at each run's best epoch, per arm (mean over seeds).
# ```
#
# ## Sensitivity to the temperature T and the weight α
#
# kd students at the headline size, seeds {glue:text}`grid_seeds_glued`. The cell is
# picked on the **validation** split (its test AUC {glue:text}`best_test_auc:.3f`); the
# cell that is best on the test split itself would report {glue:text}`test_best_auc:.3f`,
# the optimism that picking on test would add. Download:
# {download}`temperature_alpha.csv <tables/05_regularization/temperature_alpha.csv>`.

# %% tags=["hide-input"]
cells, best = analysis.select_temperature_alpha(store, grid)
save_table(cells.set_index(["temperature", "alpha"]), CHAPTER, "temperature_alpha", study.profile)
glue("best_T", f"{best['temperature']:g}", display=False)
glue("best_alpha", f"{best['alpha']:g}", display=False)
glue("best_test_auc", best["test AUC"], display=False)
glue("test_best_auc", best["test AUC of the test-best cell"], display=False)
glue("grid_seeds_glued", ", ".join(map(str, study.grid_seeds)), display=False)
fig = plots.heatmap(cells.pivot(index="temperature", columns="alpha", values="val AUC"),
                    title="kd: validation macro-AUC over T x alpha", center=None, cbar_label="macro-AUC")
glue("fig_grid", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_grid
# :name: fig-grid
#
# Validation macro-AUC of kd students over the T × α grid (mean over the grid's seeds).
# ```
