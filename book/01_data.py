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
# # Data
#
# The paper trains on CheXpert, ChestX-ray8 and a diabetic-retinopathy set. This page
# shows (1) the **real label tables** of CheXpert and NIH ChestX-ray14, which ship with
# the `torchxrayvision` package and are analysed here in every profile, and (2) the
# **images the chosen profile trains on** ({glue:text}`box_data`) with their
# patient-level splits, the pool the teachers learn from and the small target subsets.
# No patient is on two sides of a split ({glue:text}`patients_shared` shared), and no
# target subset shares a patient with its teacher's pool ({glue:text}`pool_shared`
# shared, over every seed and size).
#
# ```{admonition} What produced this page
# :class: note dropdown
# Profile **{glue:text}`box_profile`** · data: {glue:text}`box_data` · image size {glue:text}`box_image_size` ·
# student {glue:text}`box_student` · teacher {glue:text}`box_teacher` · target subset {glue:text}`box_target_subset` ·
# inits {glue:text}`box_inits` · training {glue:text}`box_training` · {glue:text}`box_KD`.
#
# Rebuild this page: {glue:text}`box_reproduce`
# ```

# %% tags=["parameters", "remove-cell"]
#: the profile (book/profiles/<name>.yml) whose study this page shows; any field of
#: kdmed.study.Study given as a papermill parameter (-p NAME VALUE) overrides its value
profile = "default"

# %% tags=["remove-cell"]
import dataclasses
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from myst_nb import glue

from kdmed import analysis, plots
from kdmed.config import POOL_FRACTION
from kdmed.data import open_dataset, subsample
from kdmed.data.real_tables import label_only_root, real_table
from kdmed.page import open_chapter, save_table
from kdmed.paper import PAPER_SUBSETS
from kdmed.runner import open_split

CHAPTER = "01_data"
study = open_chapter(globals(), CHAPTER)

# %% [markdown]
# ## Part 1 — the real label tables (no images)
#
# ```{admonition} Real labels, not real images
# :class: important
# The tables below are the real CheXpert `train.csv` (CheXpert-v1.0-small) and the real
# NIH `Data_Entry_2017_v2020.csv`, as shipped inside the `torchxrayvision` wheel (no
# images come with them); Part 2 shows the images this profile trains on.
# ```
#
# CheXpert's training table has {glue:text}`cx_rows:,d` rows from {glue:text}`cx_patients:,d`
# patients, {glue:text}`cx_frontal:,d` of them frontal views. NIH ChestX-ray14 has
# {glue:text}`nih_rows:,d` images of {glue:text}`nih_patients:,d` patients;
# {glue:text}`nih_nofinding:,d` are labelled "No Finding".

# %% tags=["hide-input"]
tables_dir = tempfile.mkdtemp(prefix="kdmed-labels-")
label_only = dict(check_files=False, progress=False)
cx_root, nih_root_labels = label_only_root("chexpert", tables_dir), label_only_root("nih", tables_dir)
cx_raw = real_table("chexpert")
nih_raw = real_table("nih")
cx_all = open_dataset("chexpert", cx_root, "train", val_fraction=0.0, views=("frontal", "lateral"), **label_only)
cx_frontal = open_dataset("chexpert", cx_root, "train", val_fraction=0.0, **label_only)
cx_ignore = open_dataset("chexpert", cx_root, "train", val_fraction=0.0, uncertain="ignore", **label_only)

glue("cx_rows", len(cx_all), display=False)
glue("cx_patients", cx_all.describe()["patients"], display=False)
glue("cx_frontal", len(cx_frontal), display=False)
glue("nih_rows", len(nih_raw), display=False)
glue("nih_patients", int(nih_raw["Patient ID"].nunique()), display=False)
glue("nih_nofinding", int((nih_raw["Finding Labels"] == "No Finding").sum()), display=False)

nih_findings = nih_raw["Finding Labels"].str.get_dummies(sep="|").drop(columns="No Finding")
summary = pd.DataFrame(
    [
        {"table": "CheXpert train.csv", "images": len(cx_all), "patients": cx_all.describe()["patients"],
         "frontal": len(cx_frontal), "labels": len(cx_all.classes)},
        {"table": "NIH Data_Entry_2017", "images": len(nih_raw), "patients": nih_raw["Patient ID"].nunique(),
         "frontal": len(nih_raw), "labels": nih_findings.shape[1]},
    ]
).set_index("table")
display(summary)

# %% [markdown]
# ### Label prevalence
#
# CheXpert's uncertain (−1) and blank entries are read as negative (U-Zeros), as the
# authors' group did. The most frequent CheXpert observation among frontal views is
# {glue:text}`cx_top_label` ({glue:text}`cx_top_prev:.1%`); the rarest NIH finding is
# {glue:text}`nih_rare_label` ({glue:text}`nih_rare_prev:.2%`).

# %% tags=["hide-input"]
cx_prev = cx_frontal.prevalence().rename("prevalence").rename_axis("class").reset_index().assign(source="CheXpert (frontal, U-Zeros)")
nih_prev = nih_findings.mean().rename("prevalence").rename_axis("class").reset_index().assign(source="NIH ChestX-ray14")
glue("cx_top_label", cx_prev.sort_values("prevalence").iloc[-1]["class"], display=False)
glue("cx_top_prev", float(cx_prev["prevalence"].max()), display=False)
glue("nih_rare_label", nih_prev.sort_values("prevalence").iloc[0]["class"], display=False)
glue("nih_rare_prev", float(nih_prev["prevalence"].min()), display=False)
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, df in zip(axes, (cx_prev, nih_prev)):
    ax.barh(df["class"], df["prevalence"], color="tab:blue" if ax is axes[0] else "tab:orange")
    ax.invert_yaxis()
    ax.set_title(df["source"].iloc[0])
    ax.set_xlabel("fraction of images positive")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Uncertainty in CheXpert
#
# The share of *uncertain* (−1) labels differs widely between observations:
# {glue:text}`cx_most_uncertain` is uncertain in {glue:text}`cx_most_uncertain_rate:.1%`
# of frontal images. This is why the uncertainty policy (zeros, ones or ignore) is an
# option of the loader.

# %% tags=["hide-input"]
obs = cx_frontal.classes
frontal_raw = cx_raw[cx_raw["Frontal/Lateral"] == "Frontal"]
rates = pd.DataFrame({
    "uncertain (−1)": (frontal_raw[obs] == -1).mean(),
    "positive (1)": (frontal_raw[obs] == 1).mean(),
    "blank": frontal_raw[obs].isna().mean(),
})
glue("cx_most_uncertain", rates["uncertain (−1)"].idxmax(), display=False)
glue("cx_most_uncertain_rate", float(rates["uncertain (−1)"].max()), display=False)
ax = rates.plot.barh(stacked=False, figsize=(8, 6), width=0.8)
ax.invert_yaxis()
ax.set_xlabel("fraction of frontal images")
ax.set_title("CheXpert: label values per observation")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Co-occurrence
#
# Findings are far from independent: each cell is the probability of the column finding
# given the row finding (CheXpert frontal views, U-Zeros). The generated chest
# images of the offline default draw their label vectors from these rows, so they keep this structure.

# %% tags=["hide-input"]
fig = plots.cooccurrence_heatmap(cx_frontal.labels, cx_frontal.classes, title="CheXpert: P(column | row)")
plt.show()

# %% [markdown]
# ### The paper's small subsets, drawn from the real tables
#
# The paper's students train on a CheXpert sample of 5,000 images and a ChestX-ray8
# sample of 5,606 (≈ 5 % of NIH). We draw them as the library draws every subset: whole
# patients, stratified by each patient's rarest positive label. The largest gap between a
# finding's prevalence in the subset and in the full training split is
# {glue:text}`subset_gap_cx:.2%` (CheXpert) and {glue:text}`subset_gap_nih:.2%`
# (ChestX-ray8). The official NIH split lists are not shipped with the tables, so the
# NIH train/test split here is a patient-level split with the official test share.

# %% tags=["hide-input"]
cx_train = open_dataset("chexpert", cx_root, "train", **label_only)
nih8_train = open_dataset("nih", nih_root_labels, "train", labels="chestxray8", **label_only)
rows, gaps = [], {}
for key, ds in (("cx", cx_train), ("nih", nih8_train)):
    n = PAPER_SUBSETS["chexpert" if key == "cx" else "chestxray8"]
    sub = subsample(ds, n, seed=0)
    assert set(sub.patient_ids) <= set(ds.patient_ids)
    full, part = ds.prevalence(), sub.prevalence()
    gaps[key] = float((full - part).abs().max())
    name = "CheXpert" if key == "cx" else "ChestX-ray8"
    for cls in ds.classes:
        rows.append({"dataset": name, "class": cls, "full training split": full[cls], "subset": part[cls]})
glue("subset_gap_cx", gaps["cx"], display=False)
glue("subset_gap_nih", gaps["nih"], display=False)
subsets = pd.DataFrame(rows)
long = subsets.melt(id_vars=["dataset", "class"], var_name="source", value_name="prevalence")
for name, df in long.groupby("dataset", sort=False):
    fig = plots.prevalence_bars(df, title=f"{name}: paper-size subset vs full training split")
    plt.show()


# %% [markdown]
# ## Part 2 — the images this profile trains on
#
# Data of this profile: **{glue:text}`box_data`**. {glue:text}`words_roles`
# Download: {download}`roles.csv <tables/01_data/roles.csv>`.

# %% tags=["hide-input"]
roles = study.data_roles()
rows, prev_rows = [], []
for role, spec in roles.items():
    leaks = analysis.split_leaks(spec)  # raises when a patient is on two sides of a split
    for split in ("train", "val", "test"):
        whole = open_split(spec, split)
        used = analysis.split_view(spec, split)
        rows.append({"role": role, "dataset": spec.dataset, "split": split, "images in the split": len(whole),
                     "part": spec.part if split == "train" else None, "images used": len(used),
                     "patients used": used.describe()["patients"], "patients on two sides": leaks})
    prev_rows.append(analysis.split_view(spec, "train").prevalence().rename("prevalence")
                     .rename_axis("class").reset_index().assign(source=role))
role_table = pd.DataFrame(rows).set_index(["role", "split"])
save_table(role_table, CHAPTER, "roles", study.profile)
glue("patients_shared", int(role_table["patients on two sides"].sum()), display=False)
display(role_table)

# %% [markdown]
# ### The teachers' pool and the target subsets
#
# The target's training split is cut once, by patient, into a pool
# ({glue:text}`pool_fraction:.0%` of its patients) and a target part; the teachers learn
# from the pool and every target subset is drawn from the other part, so no target
# subset shares a patient with any teacher, whatever its seed or size (checked below for
# every pair; the build stops if one is not 0). Download:
# {download}`pool_overlap.csv <tables/01_data/pool_overlap.csv>`.

# %% tags=["hide-input"]
overlap = analysis.patient_overlap(study)
save_table(overlap.set_index(["target n", "seed"]), CHAPTER, "pool_overlap", study.profile)
glue("pool_shared", int(overlap["shared patients"].sum()), display=False)
glue("pool_fraction", POOL_FRACTION, display=False)
display(overlap.set_index(["target n", "seed"]))

# %% [markdown]
# ```{glue:figure} fig_role_prevalence
# :name: fig-role-prevalence
#
# Label prevalence of each data role's training images.
# ```

# %% tags=["hide-input"]
fig = plots.prevalence_bars(pd.concat(prev_rows), title="label prevalence of each data role (training images)")
glue("fig_role_prevalence", fig, display=False)
plt.close(fig)

# %% [markdown]
# ### Example images
#
# One training image of the target per finding (the first image positive for it).

# %% tags=["hide-input"]
target = analysis.split_view(study.target_data(max(study.target_sizes)), "train")
picks, titles = [], []
for k, cls in enumerate(target.classes):
    hits = np.flatnonzero(target.labels[:, k] > 0.5)
    if len(hits):
        picks.append(int(hits[0]))
        titles.append(cls)
examples = target.take(picks).image_array(progress=False)
fig = plots.image_grid(np.asarray(examples), titles, ncols=7, title="target training images, one per finding")
plt.show()

# %% tags=["hide-input"]
if study.setting == "synthetic":
    per_role, role_titles = [], []
    for role in list(roles)[:1] + list(roles)[2:4]:  # target, near init, other chest
        d = analysis.split_view(roles[role], "train")
        cls = d.classes.index("Cardiomegaly")
        idx = np.flatnonzero(d.labels[:, cls] > 0.5)[:3]
        per_role.append(np.asarray(d.take(idx).image_array(progress=False)))
        role_titles += [f"{role}: Cardiomegaly"] * len(idx)
    fig = plots.image_grid(np.concatenate(per_role), role_titles, ncols=3,
                           title="acquisition style per institution (same finding)")
    plt.show()
    fundus = analysis.split_view(roles[list(roles)[-1]], "train")
    grade_idx = [int(np.flatnonzero(fundus.labels[:, g] > 0.5)[0]) for g in range(len(fundus.classes))]
    fig = plots.image_grid(np.asarray(fundus.take(grade_idx).image_array(progress=False)), fundus.classes, ncols=5,
                           title="synthetic fundus images, one per retinopathy grade")
    plt.show()

# %% [markdown]
# ### The small target subsets of this profile
#
# The students train on nested subsets of the target part (each size contains the
# smaller ones, for one seed). Their prevalence stays close to the target part's; the
# largest gap over all sizes is {glue:text}`profile_subset_gap:.2%`.

# %% tags=["hide-input"]
whole = analysis.split_view(dataclasses.replace(study.target_data(), train_n=None), "train")
sub_rows, worst = [], 0.0
full = whole.prevalence()
for n in study.target_sizes:
    part = analysis.split_view(study.target_data(n, 0), "train")
    prev = part.prevalence()
    worst = max(worst, float((full - prev).abs().max()))
    sub_rows.append(prev.rename("prevalence").rename_axis("class").reset_index().assign(source=f"n = {n}"))
sub_rows.append(full.rename("prevalence").rename_axis("class").reset_index().assign(source=f"target part ({len(whole)})"))
glue("profile_subset_gap", worst, display=False)
fig = plots.prevalence_bars(pd.concat(sub_rows), title="target subsets (seed 0) vs the whole target part")
plt.show()
