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
# # Cross-domain transfer
#
# The paper reports that teacher-student learning also wins when the **teacher's domain
# differs from the student's**. Here the chest X-ray student (the headline target
# subset) learns from a network of each other domain in two ways, by fine-tuning it
# (transfer) or by being taught by it (kd where it predicts the student's labels, and
# attention transfer, which needs no shared labels), and each domain is judged on its
# own: {glue:text}`n_domains_win` of {glue:text}`n_tests` comparisons favour the taught
# student with an interval above zero. The largest gain is
# {glue:text}`best_gain:+.1f` AUC points ({glue:text}`best_test`).
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
# The domains: {glue:text}`domains_text`. Fundus photographs carry five retinopathy
# grades, another label space: only attention transfer can carry their network's
# knowledge, and a fundus-trained init gets a fresh classifier head. A chest network of
# another dataset is scored and distils over the findings both share, matched by name.
# An ImageNet network would be a further domain ({glue:text}`imagenet_status`).

# %% tags=["parameters", "remove-cell"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
from IPython.display import display
from myst_nb import glue

from kdmed import analysis, experiments, plots
from kdmed.models import IMAGENET_ARCHS, imagenet_weights_file
from kdmed.page import open_chapter, run_grids, save_table

CHAPTER = "04_cross_domain"
study = open_chapter(globals(), CHAPTER)
store = study.store()
grid = experiments.cross_domain(study)
run_grids(study, grid)
if study.far_init == "imagenet":
    imagenet_status = "in this profile it is the far init of the headline study, see the distillation chapter"
elif study.student_arch in IMAGENET_ARCHS:
    path, _ = imagenet_weights_file(study.student_arch)
    imagenet_status = f"weights found at {path}; set far_init: imagenet to use them" if path.exists() \
        else f"it needs {path}, which is absent"
else:
    imagenet_status = f"{study.student_arch} has no ImageNet weights"
glue("imagenet_status", imagenet_status, display=False)
not_run = [role for role in experiments.DOMAINS if not study.has_role(role)]
glue("domains_text", "; ".join(experiments.domain_roles(study).values())
     + (f"; not run: {', '.join(not_run)} (no dataset of its own in the {study.setting} setting)" if not_run else ""),
     display=False)

# %% [markdown]
# ## Taught against transferred, per domain
#
# Each row compares two ways of using the same domain, on the same
# {glue:text}`n_seeds` seeds and test images (AUC points, hierarchical 95 % CI; Holm's
# correction over this page's rows). Download: {download}`domains.csv <tables/04_cross_domain/domains.csv>`.

# %% tags=["hide-input"]
table = analysis.with_holm(analysis.cross_domain_table(study, store, grid).set_index(["domain", "comparison"]),
                           real_data=study.setting != "synthetic")
save_table(table, CHAPTER, "domains", study.profile)
display(table.style.format("{:+.2f}", subset=["gain (AUC points)", "low", "high"])
        .format("{:.3f}", subset=["p", "p (Holm)", "taught AUC", "transfer AUC"]))
wins = table[table["low"] > 0]
best = table["gain (AUC points)"].idxmax()
glue("n_domains_win", len(wins), display=False)
glue("n_tests", len(table), display=False)
glue("best_gain", float(table.loc[best, "gain (AUC points)"]), display=False)
glue("best_test", f"{best[1]}, {best[0]}", display=False)
glue("n_seeds", len(study.sweep_seeds), display=False)
flat = table.reset_index()
flat["row"] = flat["domain"] + ": " + flat["comparison"].str.split(" ").str[0]
fig = plots.forest_plot(flat, label="row", estimate="gain (AUC points)", reference=0.0,
                        xlabel="taught − transferred (AUC points, 95% CI)", title="per teacher domain")
glue("fig_domains", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_domains
# :name: fig-domains
#
# For each teacher domain, the student taught by that domain's network minus the student
# fine-tuned from it (95 % CI). No pooled estimate is drawn: the domains are different
# effects.
# ```
