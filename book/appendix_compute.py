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
# # Appendix: Compute
#
# What the book's training costs and where the time goes. The numbers come from the
# benchmark scripts in `benchmarks/`; each writes its table to
# `benchmarks/results/<name>-<device>.json` and this page only reads those files. A
# benchmark not run on a device is shown as **not measured**: no number here is typed in
# by hand. Measured so far on: {glue:text}`compute_machines`. The `full` profile's study
# at the paper's sizes needs {glue:text}`full_image_epochs` training image-epochs at its
# epoch caps, {glue:text}`full_dominant`; on the measured DenseNet-121 throughput that is
# {glue:text}`full_hours`.
#
# | script | what it measures |
# | --- | --- |
# | `bench_models.py` | model-only ceiling: training steps/s of each architecture on a random batch already on the device |
# | `bench_e2e.py` | the real training loop (`Trainer` fed by the image cache through `ArrayLoader`, with augmentation) against that ceiling |
# | `bench_strategies.py` | cost of each strategy per augmented epoch, its teacher pass shared by the runs of a chapter, relative to training from labels only |
# | `bench_scaling.py` | time of one `run_one` as the training subset grows (fit time should be proportional to n) |
# | `bench_numerics.py` | epoch time with the reproducible (AVX2, one thread) CPU kernels against the native ones |
# | `bench_grid.py` | one grid of runs trained cold: worker processes against one process, quiet and beside a busy loop |
# | `bench_build.py` | the whole default book built cold, quiet and beside a busy loop (half an hour to an hour per build) |
#
# Rerun them with `python benchmarks/<script>.py` (add `--device cuda` on a GPU;
# `bash benchmarks/run_gpu.sh` runs all of them there).

# %% tags=["parameters", "remove-cell"]
profile = "default"
#: folder of the benchmark JSON files (relative to the repository root, the book's working directory)
results_dir = "benchmarks/results"

# %% tags=["remove-cell"]
import dataclasses

import matplotlib.pyplot as plt
import seaborn as sns
from IPython.display import display
from matplotlib.ticker import FuncFormatter
from myst_nb import glue

from kdmed import benchreport as br
from kdmed.page import save_table
from kdmed.study import Study

CHAPTER = "appendix_compute"
results = br.load_all(results_dir)
status = br.status_table(results)
machines = sorted(set(status["measured on"]) - {br.NOT_MEASURED})
glue("compute_machines", "; ".join(machines) if machines else "nothing yet (no benchmark JSON found)", display=False)
display(status)

# %% [markdown]
# ## Throughput: model-only ceiling and the real training loop
#
# The ceiling is forward + loss + backward + Adam on a batch that already sits on the
# device (bf16 autocast and channels_last on CUDA, fp32 on CPU). The end-to-end figure
# trains the same model with the real loop, fed from the on-disk image cache with flips
# and rotations done on the device. Their ratio is the share of the ceiling that the
# data pipeline leaves (target on a GPU: at least 0.9). End-to-end / ceiling: CPU
# {glue:text}`e2e_ratio_cpu`, GPU {glue:text}`e2e_ratio_cuda`.

# %% tags=["hide-input"]
models, e2e = br.frame(results, "models"), br.frame(results, "e2e")
if not models.empty:
    display(models[["device", "model", "profile", "image_size", "batch_size", "params_m", "step_ms",
                    "images_per_s"]].round(2))
if not e2e.empty:
    display(e2e[["device", "model", "image_size", "batch_size", "n_images", "e2e_images_per_s",
                 "ceiling_images_per_s", "ratio"]].round(2))
for dev in br.DEVICES:
    glue(f"e2e_ratio_{dev}", br.e2e_text(results, dev), display=False)

# %% [markdown]
# ## Cost of each strategy, and of reproducible numerics
#
# One augmented epoch of each strategy, relative to training the same student from
# labels only. A taught student reads its teacher's outputs on each epoch's views from a
# shared cache; the first student of a teacher and view seed computes them (the teacher
# pass, shown separately as `pass_s`), the others read them, so a chapter pays each pass
# once. Amortised costs (targets: kd at most 1.25 x, attention transfer at most 1.5 x):
# {glue:text}`strategy_ratios`. Reproducible CPU kernels: {glue:text}`numerics_cost`.

# %% tags=["hide-input"]
strategies, numerics = br.frame(results, "strategies"), br.frame(results, "numerics")
if not strategies.empty:
    display(strategies[["device", "student", "strategy", "role", "epoch_s", "pass_s", "ratio", "amortised"]].round(2))
if not numerics.empty:
    display(numerics[["arch", "setting", "isa", "threads", "epoch_s", "images_per_s", "vs_reproducible"]].round(2))
glue("strategy_ratios", br.strategy_text(results), display=False)
glue("numerics_cost", br.numerics_text(results), display=False)

# %% [markdown]
# ## Run time vs subset size
#
# Training time per image per epoch should be flat, i.e. a slope of 1 on the log-log
# plot. Log-log slope of training time vs n: {glue:text}`scaling_slope`.

# %% tags=["hide-input"]
scaling = br.frame(results, "scaling")
if not scaling.empty:
    display(scaling[["device", "n", "n_train", "epochs", "train_s", "total_s", "us_per_image_epoch"]].round(2))
glue("scaling_slope", br.scaling_text(results), display=False)

# %% [markdown]
# ## Runs in parallel, and the whole book built cold
#
# A chapter's runs are independent once their teachers and inits exist, so the grid
# runner trains them in worker processes, one per available core, each with one torch
# thread (one thread per process does not wait at an OpenMP barrier for a thread the
# system has descheduled, and keeps the numbers independent of the core count). On
# Linux each worker is also a session of its own: the autogroup scheduler shares the
# CPUs between sessions, so a chapter's workers in the kernel's one session together got
# a single session's share beside a job started elsewhere (the builds labelled "workers
# in the kernel's session" below); in their own sessions each gets a process's share.
# `bench_grid.py` trains one fixed grid of the default study cold in each setting;
# ratios pair only settings measured in the same call: {glue:text}`grid_ratios`.
# `bench_build.py` builds the whole default book cold (a fresh results store and
# caches), quiet and beside a CPU-bound busy loop; builds may come from different
# sessions, and sessions do not always get the same CPU model, so a ratio pairs only
# builds on one CPU model: {glue:text}`build_times`. Reproducible numerics give the
# same bits on one CPU model only; this book's results store was trained on
# {glue:text}`store_cpus`.

# %% tags=["hide-input"]
for name in ("grid", "build"):
    table = br.frame(results, name)
    if not table.empty:
        shown = [c for c in ("setting", "competing process", "seconds", "cpu", "run", "date", "load_1min_before",
                             "load_1min_after") if c in table.columns]
        display(table[shown].round(1))
glue("grid_ratios", br.grid_text(results), display=False)
glue("build_times", br.build_text(results), display=False)
glue("store_cpus", ", ".join(br.store_cpus(Study.from_profile(profile).store().root)) or "no run yet", display=False)

# %% [markdown]
# ```{glue:figure} fig_compute
# :name: fig-compute
#
# Model-only ceilings, the share of the ceiling the real loop reaches, the images/s of
# each strategy and the run time against the subset size, per device that measured them.
# ```

# %% tags=["hide-input"]
def empty(ax: plt.Axes, title: str) -> None:
    ax.text(0.5, 0.5, br.NOT_MEASURED, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set(title=title, xticks=[], yticks=[])


plain = FuncFormatter(lambda v, _: f"{v:g}")
fig, axes = plt.subplots(2, 2, figsize=(14, 9))
if models.empty:
    empty(axes[0, 0], "model-only ceiling")
else:
    sns.barplot(data=models.assign(where=models["model"] + " " + models["image_size"].astype(str) + " px"),
                y="where", x="images_per_s", hue="device", orient="h", ax=axes[0, 0])
    axes[0, 0].set_xscale("log")
    axes[0, 0].xaxis.set_major_formatter(plain)
    axes[0, 0].set(xlabel="training images/s (log scale)", ylabel="", title="model-only ceiling")
if e2e.empty:
    empty(axes[0, 1], "end-to-end vs ceiling")
else:
    sns.barplot(data=e2e, y="model", x="ratio", hue="device", orient="h", ax=axes[0, 1])
    axes[0, 1].axvline(0.9, ls="--", color="grey", lw=1)
    axes[0, 1].set(xlabel="end-to-end images/s / model-only images/s", ylabel="",
                   title="share of the ceiling the real loop reaches")
if strategies.empty:
    empty(axes[1, 0], "strategy cost")
else:
    taught = strategies[strategies["role"] != "computes"]
    sns.barplot(data=taught, y="strategy", x="amortised", hue="student", orient="h", ax=axes[1, 0])
    axes[1, 0].axvline(1.25, ls="--", color="grey", lw=1)
    axes[1, 0].set(xlabel="epoch time / scratch epoch time (teacher pass amortised)", ylabel="",
                   title="cost of each strategy")
if scaling.empty:
    empty(axes[1, 1], "run time vs subset size")
else:
    sns.lineplot(data=scaling, x="n_train", y="train_s", hue="device", marker="o", ax=axes[1, 1])
    axes[1, 1].set(xscale="log", yscale="log", xlabel="training images n (log)", ylabel="training seconds (log)",
                   title="run time vs subset size")
fig.tight_layout()
glue("fig_compute", fig, display=False)
plt.close(fig)

# %% [markdown]
# ## What the full study would cost
#
# Every run of the `full` profile's study (teachers on a {glue:text}`full_pool:,d`-image
# CheXpert pool, students at n = {glue:text}`full_target:,d`, every arm, size and seed),
# counted in training image-epochs at each run's epoch cap (an upper bound: early
# stopping ends most runs sooner; the default build used {glue:text}`cap_share:.0%` of
# its caps), divided by the measured model-only DenseNet-121 throughput at 224 px. GPU:
# {glue:text}`full_hours_gpu`. CPU: {glue:text}`full_hours_cpu`. Download:
# {download}`cost_model.csv <tables/appendix_compute/cost_model.csv>`.

# %% tags=["hide-input"]
full = dataclasses.replace(Study.from_profile("full"), setting="synthetic")  # the sizes only: no data is read
share = br.default_cap_share(profile)
rates = {dev: br.measured_rate(results, full.student_arch, dev) for dev in br.DEVICES}
cost = br.cost_model(full, rates["cuda"] or rates["cpu"])
save_table(cost, CHAPTER, "cost_model", profile)
display(cost.style.format({"image-epochs": "{:,.0f}", "share": "{:.0%}", "hours": "{:,.1f}"}, na_rep="—"))
top = cost["share"].idxmax()
glue("full_image_epochs", f"{cost['image-epochs'].sum():,.0f}", display=False)
glue("full_dominant", f"{cost.loc[top, 'share']:.0%} of them in the {top} runs", display=False)
for dev, label in (("cuda", "full_hours_gpu"), ("cpu", "full_hours_cpu")):
    hours = cost["image-epochs"].sum() / rates[dev] / 3600 if rates[dev] else None
    glue(label, f"{hours:,.0f} hours at the cap, about {hours * share:,.0f} at the share of the cap the default "
                f"build used ({rates[dev]:,.1f} images/s measured)" if hours else br.NOT_MEASURED, display=False)
glue("full_hours", "not measured on a GPU: " + br.NOT_MEASURED if not rates["cuda"] else
     f"{cost['image-epochs'].sum() / rates['cuda'] / 3600:,.0f} GPU-hours at the cap", display=False)
glue("full_pool", full.teacher_pool_n, display=False)
glue("full_target", full.target_n, display=False)
glue("cap_share", share, display=False)
