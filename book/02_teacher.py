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
# ```{admonition} What produced this page
# :class: note
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student`, teacher {glue:text}`box_teacher` · small target subset
# {glue:text}`box_target_subset` · teacher / transfer-init sources {glue:text}`box_teacher_init_source` ·
# seeds {glue:text}`box_seeds` · epochs {glue:text}`box_epochs` · {glue:text}`box_KD`.
# ```
#
# The teacher is a CNN "carefully pre-trained" on a **large training pool of the target's
# own domain** — the abstract's setting, where the students learn from a small sample
# (CheXpert n = 5k, ChestX-ray8 n = 5.6k) — and then frozen. Teachers from other domains
# (another chest institution, fundus photographs) are the cross-domain chapter's. The
# transfer-learning arm of the next chapter starts instead from the student's own
# architecture trained on **another chest source** (NIH in the authors' related code).
# This page trains both (or loads them from the results cache, keyed by their full
# configuration), and a student trained from scratch on the small target subset for
# reference.

# %% tags=["parameters"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display
from myst_nb import glue

from kdmed import plots
from kdmed.analysis import evaluate_with_ci, histories
from kdmed.runner import evaluate_on
from kdmed.study import open_chapter

study = open_chapter(globals())
teacher = study.teacher()
init = study.pretrained_init()
scratch = study.student("scratch", study.target_n, seed=study.seeds[0])
runs = [teacher, init, scratch]
labels = [{"model": "teacher"}, {"model": "transfer init"}, {"model": "scratch student"}]
table = study.run(runs, labels)
display(table[["model", "name", "arch", "dataset", "institution", "n_train", "epochs_run", "best_epoch",
               "macro_auc", "train_seconds"]])

# %% [markdown]
# ## Learning curves
#
# The teacher trained for {glue:text}`teacher_epochs_run` epochs (best validation
# macro-AUC at epoch {glue:text}`teacher_best_epoch`), in {glue:text}`teacher_seconds:.0f` s.

# %%
row = table.set_index("model").loc["teacher"]
glue("teacher_epochs_run", int(row["epochs_run"]), display=False)
glue("teacher_best_epoch", int(row["best_epoch"]), display=False)
glue("teacher_seconds", float(row["train_seconds"]), display=False)
hist = histories(study.store(), runs, labels)
fig = plots.history_curves(hist, ["train_loss", "val_loss", "val_macro_auc"], hue="model",
                           title="training history (validation split of each model's own source)")
plt.show()

# %% [markdown]
# ## How good is the teacher on the target?
#
# What matters for distillation is how much better the teacher is than the student's
# starting point, on the **target's** test images. On the target test set the
# teacher reaches a macro-AUC of {glue:text}`teacher_target_auc:.3f`
# (95 % CI {glue:text}`teacher_target_low:.3f`–{glue:text}`teacher_target_high:.3f`,
# patient bootstrap), against {glue:text}`scratch_target_auc:.3f` for the student trained
# from scratch on {glue:text}`target_n_glued:,d` target images, and
# {glue:text}`init_target_auc:.3f` for the transfer initialisation before any fine-tuning.

# %%
target_test = study.target_data()
evals = {}
for name, cfg in (("teacher", teacher), ("transfer init (not fine-tuned)", init), ("scratch student", scratch)):
    scores = evaluate_on(cfg, study.store(), target_test)
    evals[name] = (scores, *evaluate_with_ci(scores, n_boot=study.n_boot))
t_metrics = evals["teacher"][1]
glue("teacher_target_auc", t_metrics["macro_auc"], display=False)
glue("teacher_target_low", t_metrics["macro_auc_ci"]["low"], display=False)
glue("teacher_target_high", t_metrics["macro_auc_ci"]["high"], display=False)
glue("scratch_target_auc", evals["scratch student"][1]["macro_auc"], display=False)
glue("init_target_auc", evals["transfer init (not fine-tuned)"][1]["macro_auc"], display=False)
glue("target_n_glued", study.target_n, display=False)
per_class = pd.concat([df.assign(model=name) for name, (_, _, df) in evals.items()])
display(per_class.pivot(index="class", columns="model", values="auc").round(3))

# %%
fig = plots.forest_plot(per_class, hue="model", title="per-class AUC on the target test set (95% CI)")
plt.show()

# %% [markdown]
# ## ROC curves of the teacher on the target test set

# %%
scores = evals["teacher"][0]
fig = plots.roc_curves(scores["y_true"], scores["y_score"], scores["classes"], title="teacher on the target test set")
plt.show()

# %% [markdown]
# The teacher's checkpoint is stored with its run (`results/<profile>/<key>/model.pt`) and
# reused by the next chapters: they name the same configuration, so they find it in the
# cache instead of training it again.
