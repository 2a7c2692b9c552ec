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
# ```{admonition} What produced this page
# :class: note
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student`, teacher {glue:text}`box_teacher` · small target subset
# {glue:text}`box_target_subset` · teacher / transfer-init sources {glue:text}`box_teacher_init_source` ·
# seeds {glue:text}`box_seeds` · epochs {glue:text}`box_epochs` · {glue:text}`box_KD`.
# ```
#
# The paper reports that teacher-student learning also wins when the **teacher's domain
# differs from the student's**. Here one chest X-ray student (the small target subset)
# is taught, or initialised, by networks trained on different domains:
#
# * **chest, same institution** — the in-domain teacher of the previous chapters (the
#   reference);
# * **chest, MIMIC-like institution** and **chest, NIH-like institution** — other chest
#   sources, with their own label mix and acquisition style (with real data: the other
#   dataset, whose label space differs, so it teaches by attention only);
# * **fundus (diabetic retinopathy)** — a distant domain with another label space: its
#   teacher can only teach through attention maps (`at`), and a fundus-trained
#   initialisation keeps its features but gets a fresh classifier head;
# * **ImageNet** — only where ImageNet weights are on disk (they cannot be downloaded on
#   the machine that builds the book) and the architectures have them.
#
# Each cell of the heatmap is the mean gain in test macro-AUC over the scratch student
# of the same seed.

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
from kdmed.models import imagenet_weights_file
from kdmed.study import CROSS_DOMAIN_METHODS, CROSS_DOMAINS, cross_domain_grid, open_chapter

study = open_chapter(globals())
cross_methods = list(CROSS_DOMAIN_METHODS)
n = study.target_n
configs, labels = cross_domain_grid(study, cross_methods)
domains = CROSS_DOMAINS

# ImageNet: needs the weights file and an architecture that has ImageNet weights
imagenet_status = "not testable here"
if study.student_arch in ("densenet121", "resnet18"):
    path, _ = imagenet_weights_file(study.student_arch)
    if path.exists():
        imagenet_status = "measured"
        for seed in study.seeds:
            configs.append(study.student("transfer", n, seed, init="imagenet"))
            labels.append({"domain": "ImageNet", "method": "transfer"})
    else:
        imagenet_status = f"not testable here: {path} is absent"
else:
    imagenet_status = f"not testable here: {study.student_arch} has no ImageNet weights"
glue("imagenet_status", imagenet_status, display=False)
table = study.run(configs, labels)
glue("n_cross_runs", len(table), display=False)

# %% [markdown]
# {glue:text}`n_cross_runs` runs at n = {glue:text}`cross_n` target images. ImageNet:
# {glue:text}`imagenet_status`.

# %%
glue("cross_n", n, display=False)
scratch_auc = table[table["method"] == "scratch"].set_index("seed")["macro_auc"]
taught = table[table["method"] != "scratch"].copy()
taught["gain over scratch"] = taught["macro_auc"] - taught["seed"].map(scratch_auc)
gains = taught.groupby(["domain", "method"], sort=False)["gain over scratch"].mean().unstack()
gains = gains[[m for m in cross_methods if m in gains.columns]]
fig = plots.heatmap(gains, title="gain in test macro-AUC over scratch (mean over seeds)",
                    cbar_label="AUC points", fmt="+.3f")
plt.show()

# %% [markdown]
# ## Distillation against transfer learning, per teacher domain
#
# The paper's comparison within each domain: kd (or at, for the fundus teacher) against
# fine-tuning a network from the same domain. The largest kd − transfer difference is
# {glue:text}`best_domain_gain:+.4f` ({glue:text}`best_domain`); in
# {glue:text}`n_domains_kd_wins` of {glue:text}`n_domains` domains the taught student beats
# the transferred one on average.

# %%
rows = []
for domain, role in domains.items():
    d = taught[taught["domain"] == domain]
    teach_method = "kd" if study.same_label_space(role) else "at"
    a = d[d["method"] == teach_method].set_index("seed")["macro_auc"]
    b = d[d["method"] == "transfer"].set_index("seed")["macro_auc"]
    diff = (a - b).dropna()
    rows.append({"domain": domain, "taught by": teach_method, "difference": diff.mean(),
                 "seeds won": int((diff > 0).sum()), "seeds": len(diff)})
per_domain = pd.DataFrame(rows)
display(per_domain.round(4))
glue("best_domain", per_domain.loc[per_domain["difference"].idxmax(), "domain"], display=False)
glue("best_domain_gain", float(per_domain["difference"].max()), display=False)
glue("n_domains_kd_wins", int((per_domain["difference"] > 0).sum()), display=False)
glue("n_domains", len(per_domain), display=False)
long = taught[taught["method"].isin(["transfer", "kd", "at"])]
fig, ax = plt.subplots(figsize=(7.5, 4))
sns.barplot(data=long, x="domain", y="macro_auc", hue="method", errorbar=("ci", 95), ax=ax)
ax.axhline(float(scratch_auc.mean()), color="black", ls="--", lw=0.8, label="scratch")
ax.set_ylim(max(0.4, float(long["macro_auc"].min()) - 0.05), None)
ax.set_ylabel("test macro-AUC")
ax.set_xlabel("")
ax.legend(fontsize=8)
ax.set_title("taught vs transferred, per source domain")
fig.tight_layout()
plt.show()
