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
# ```{admonition} What produced this page
# :class: note
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student`, teacher {glue:text}`box_teacher` · small target subset
# {glue:text}`box_target_subset` · teacher / transfer-init sources {glue:text}`box_teacher_init_source` ·
# seeds {glue:text}`box_seeds` · epochs {glue:text}`box_epochs` · {glue:text}`box_KD`.
# ```
#
# The paper's v1 studies how the student **converges** and argues that the teacher
# **regularizes** it (less over-fitting). Here the same students train for a fixed number
# of epochs without early stopping, so that every curve runs to the end, and we look at
# training against validation loss and AUC, the generalization gap, and the epoch of the
# best validation AUC. Last, a small grid of temperature T × weight α.

# %% tags=["parameters"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from myst_nb import glue

from kdmed import plots
from kdmed.analysis import convergence_table, histories
from kdmed.study import REGULARIZATION_METHODS, open_chapter, regularization_grid, temperature_alpha_grid

study = open_chapter(globals())
reg_methods = list(REGULARIZATION_METHODS)
n = study.target_n
configs, labels = regularization_grid(study, reg_methods)
table = study.run(configs, labels)
hist = histories(study.store(), configs, labels)

# %% [markdown]
# ## Training and validation curves
#
# Means over {glue:text}`reg_seeds` seeds with 95 % CI bands, n = {glue:text}`reg_n`
# target images, {glue:text}`reg_epochs` epochs. Training loss includes each method's own
# terms; the validation loss is the plain task loss for every method, so it compares.

# %%
glue("reg_seeds", len(study.seeds), display=False)
glue("reg_n", n, display=False)
glue("reg_epochs", study.epochs, display=False)
fig = plots.history_curves(hist, ["train_eval_loss", "val_loss"], hue="method", title="task loss per epoch")
plt.show()
auc_cols = ["train_eval_macro_auc", "val_macro_auc"]
fig = plots.history_curves(hist, auc_cols, hue="method", title="macro-AUC per epoch")
plt.show()

# %% [markdown]
# ## Generalization gap and epochs to best
#
# The gap is measured at the last epoch: training minus validation macro-AUC, and
# validation minus training task loss. Without a teacher (scratch) the AUC gap is
# {glue:text}`gap_scratch:.3f`; with one (kd) it is {glue:text}`gap_kd:.3f`. The best
# validation AUC came at epoch {glue:text}`best_epoch_scratch:.1f` on average for
# scratch and {glue:text}`best_epoch_kd:.1f` for kd.

# %%
conv = convergence_table(study.store(), configs, labels)
display(conv.round(4))
for method, name in (("scratch", "scratch"), ("kd", "kd")):
    has = method in conv.index
    glue(f"gap_{name}", float(conv.loc[method, "auc_gap"]) if has else float("nan"), display=False)
    glue(f"best_epoch_{name}", float(conv.loc[method, "best_epoch"]) if has else float("nan"), display=False)
gap_long = conv.reset_index()[["method", "auc_gap", "loss_gap"]].melt(id_vars="method", var_name="gap", value_name="value")
fig, ax = plt.subplots(figsize=(6.5, 3.6))
sns.barplot(data=gap_long, x="method", y="value", hue="gap", ax=ax)
ax.axhline(0, color="black", lw=0.8)
ax.set_title("generalization gap at the last epoch (mean over seeds)")
ax.set_ylabel("")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sensitivity to the temperature T and the weight α
#
# kd students (random init) at n = {glue:text}`reg_n`, seeds {glue:text}`grid_seeds_glued`.
# The best cell is T = {glue:text}`best_T` and α = {glue:text}`best_alpha` (test macro-AUC
# {glue:text}`best_grid_auc:.3f`); the spread over the grid is {glue:text}`grid_spread:.3f`
# AUC points.

# %%
grid_cfgs = temperature_alpha_grid(study)
grid_table = study.run(grid_cfgs)  # the table has the temperature and alpha of each run
pivot = grid_table.groupby(["temperature", "alpha"])["macro_auc"].mean().unstack()
best_T, best_a = np.unravel_index(np.nanargmax(pivot.to_numpy()), pivot.shape)
glue("grid_seeds_glued", ", ".join(map(str, study.grid_seeds)), display=False)
glue("best_T", f"{pivot.index[best_T]:g}", display=False)
glue("best_alpha", f"{pivot.columns[best_a]:g}", display=False)
glue("best_grid_auc", float(pivot.to_numpy()[best_T, best_a]), display=False)
glue("grid_spread", float(np.nanmax(pivot.to_numpy()) - np.nanmin(pivot.to_numpy())), display=False)
fig = plots.heatmap(pivot, title="kd: test macro-AUC over T × alpha", center=None, cbar_label="macro-AUC")
plt.show()
