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
# by hand. Measured so far on: {glue:text}`compute_machines`.
#
# | script | what it measures |
# | --- | --- |
# | `bench_models.py` | model-only ceiling: training steps/s of each architecture on a random batch already on the device |
# | `bench_e2e.py` | the real training loop (`Trainer` fed by the image cache through `ArrayLoader`, with augmentation) against that ceiling |
# | `bench_strategies.py` | cost per epoch of each strategy (kd with cached or online teacher, at, kd+at) relative to training from labels only |
# | `bench_scaling.py` | time of one `run_one` as the training subset grows (fit time should be proportional to n) |
#
# Rerun them with `python benchmarks/<script>.py` (add `--device cuda` on a GPU).

# %% tags=["parameters"]
profile = "default"
#: folder of the benchmark JSON files (relative to the repository root, the book's working directory)
results_dir = "benchmarks/results"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import display
from matplotlib.ticker import FuncFormatter
from myst_nb import glue

BENCHMARKS = {
    "models": "model-only ceiling",
    "e2e": "end-to-end vs ceiling",
    "strategies": "strategy cost per epoch",
    "scaling": "run time vs subset size",
}
DEVICES = ("cpu", "cuda")
NOT_MEASURED = "not measured"


def load(name: str, device: str) -> dict | None:
    """The benchmark's JSON (rows + machine) or None when the file does not exist."""
    path = Path(results_dir) / f"{name}-{device}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable benchmark JSON file ({err}); rerun benchmarks/bench_{name}.py") from err
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: expected a JSON object with a 'rows' list; rerun benchmarks/bench_{name}.py")
    # bench_strategies.py writes its device description as a string, the other scripts a machine record
    machine = data.get("machine") or {"device_name": data.get("device", "?")}
    data["machine"] = machine
    return data


results = {(name, dev): load(name, dev) for name in BENCHMARKS for dev in DEVICES}


def frame(name: str) -> pd.DataFrame:
    """Every row of benchmark ``name`` over the devices that measured it, with a ``device`` column."""
    parts = []
    for (n, dev), d in results.items():
        if n == name and d:
            rows = pd.DataFrame(d["rows"]).assign(device=dev)
            if "teacher" in d and "teacher" not in rows:  # bench_strategies keeps the teacher at the top
                rows["teacher"] = d["teacher"]
            parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


status = pd.DataFrame(
    [{"benchmark": f"{name} ({what})", "device": dev,
      "measured on": d["machine"].get("device_name", "?") if d else NOT_MEASURED,
      "torch": d["machine"].get("torch", "") if d else "",
      "load (1 min)": d["machine"].get("load_1min", "") if d else "",
      "date": d["machine"].get("date", "") if d else ""}
     for name, what in BENCHMARKS.items() for dev in DEVICES
     for d in [results[(name, dev)]]]
)
machines = sorted({row["measured on"] for _, row in status.iterrows() if row["measured on"] != NOT_MEASURED})
glue("compute_machines", "; ".join(machines) if machines else "nothing yet (no benchmark JSON found)", display=False)
display(status)

# %% [markdown]
# ## Throughput: model-only ceiling and the real training loop
#
# The ceiling is forward + loss + backward + Adam on a batch that already sits on the
# device (bf16 autocast and channels_last on CUDA, fp32 on CPU); each model runs at the
# image size of the profile that uses it. The end-to-end figure trains the same model
# with the real loop, fed from the on-disk image cache with flips and rotations done on
# the device. Their ratio is the share of the ceiling that the data pipeline leaves
# (target on a GPU: at least 0.9). End-to-end / ceiling: CPU {glue:text}`e2e_ratio_cpu`,
# GPU {glue:text}`e2e_ratio_cuda`.

# %%
models = frame("models")
e2e = frame("e2e")
if not models.empty:
    display(models[["device", "model", "profile", "image_size", "batch_size", "params_m", "steps", "step_ms",
                    "images_per_s"]].round(2))
if not e2e.empty:
    display(e2e[["device", "model", "image_size", "batch_size", "n_images", "loader_images_per_s",
                 "e2e_images_per_s", "ceiling_images_per_s", "ratio"]].round(2))


def ratio_text(device: str) -> str:
    d = results[("e2e", device)]
    if not d:
        return NOT_MEASURED
    return ", ".join(f"{r['model']} {r['ratio']:.2f}" for r in d["rows"])


for dev in DEVICES:
    glue(f"e2e_ratio_{dev}", ratio_text(dev), display=False)

# %% [markdown]
# ## Cost of each strategy
#
# One epoch of each strategy, relative to training the same student from labels only
# (`x scratch`). Targets: kd at most 1.25 x, attention transfer at most 1.5 x. With a
# cached teacher, kd reads the teacher's logits from memory; online (with augmentation,
# and always for attention transfer) the teacher runs a forward pass on every batch.
# Measured: {glue:text}`strategy_ratios`.

# %%
strategies = frame("strategies")
if not strategies.empty:
    display(strategies[["device", "student", "strategy", "teacher_mode", "epoch_s", "images_per_s", "ratio",
                        "setup_s"]].round(2))


def strategy_text() -> str:
    parts = []
    for dev in DEVICES:
        d = results[("strategies", dev)]
        if not d:
            parts.append(f"{dev.upper()} {NOT_MEASURED}")
            continue
        for student in dict.fromkeys(r["student"] for r in d["rows"]):
            got = {r["strategy"]: r["ratio"] for r in d["rows"] if r["student"] == student}
            shown = ", ".join(f"{k} {v:.2f}x" for k, v in got.items() if k != "scratch")
            parts.append(f"{dev.upper()} {student}: {shown}")
    return "; ".join(parts)


glue("strategy_ratios", strategy_text(), display=False)

# %% [markdown]
# ## Run time vs subset size
#
# One complete run (`run_one`: data, a fixed number of epochs, validation each epoch,
# test evaluation) per training-set size. Training time per image per epoch should be
# flat, i.e. a slope of 1 on the log-log plot; the whole run's slope is lower because
# the fixed-size validation/test work and the start-up weigh more on small runs.
# Log-log slope of training time vs n: {glue:text}`scaling_slope`.

# %%
scaling = frame("scaling")
if not scaling.empty:
    display(scaling[["device", "n", "n_train", "epochs", "train_s", "total_s", "us_per_image_epoch",
                     "images_per_s"]].round(2))
slopes = []
for dev in DEVICES:
    d = results[("scaling", dev)]
    slopes.append(f"{dev.upper()} {d['slope_train']:.2f} (whole run {d['slope_total']:.2f}, "
                  f"{d['params']['arch']} {d['params']['image_size']} px, n {min(d['params']['sizes'])}-"
                  f"{max(d['params']['sizes'])})" if d and "slope_train" in d else f"{dev.upper()} {NOT_MEASURED}")
glue("scaling_slope", "; ".join(slopes), display=False)


# %%
def empty(ax: plt.Axes, title: str) -> None:
    ax.text(0.5, 0.5, NOT_MEASURED, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def plain_log_ticks(axis) -> None:
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # label the 2x and 5x minor ticks too: one decade often spans the whole axis
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


fig, axes = plt.subplots(2, 2, figsize=(14, 9))
ax = axes[0, 0]
if models.empty:
    empty(ax, "model-only ceiling")
else:
    sns.barplot(data=models.assign(where=models["model"] + " " + models["image_size"].astype(str) + " px"),
                y="where", x="images_per_s", hue="device", orient="h", ax=ax)
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set(xlabel="training images/s (log scale)", ylabel="", title="model-only ceiling")
ax = axes[0, 1]
if e2e.empty:
    empty(ax, "end-to-end vs ceiling")
else:
    sns.barplot(data=e2e, y="model", x="ratio", hue="device", orient="h", ax=ax)
    ax.axvline(0.9, ls="--", color="grey", lw=1, label="GPU target 0.9")
    ax.set_xlim(0, max(1.05, float(e2e["ratio"].max()) * 1.05))
    ax.legend(loc="lower left")
    ax.set(xlabel="end-to-end images/s / model-only images/s", ylabel="",
           title="share of the ceiling the real loop reaches")
ax = axes[1, 0]
if strategies.empty:
    empty(ax, "images/s per strategy")
else:
    teacher = strategies["teacher"] if "teacher" in strategies else "?"
    s = strategies.assign(student=strategies["student"] + ", teacher " + teacher + " (" + strategies["device"] + ")")
    sns.barplot(data=s, y="strategy", x="images_per_s", hue="student", orient="h", ax=ax)
    ax.set(xlabel="training images/s", ylabel="", title="images/s per strategy")
ax = axes[1, 1]
if scaling.empty:
    empty(ax, "run time vs subset size")
else:
    sns.lineplot(data=scaling, x="n_train", y="train_s", hue="device", marker="o", ax=ax)
    for dev, g in scaling.groupby("device"):
        # slope-1 guide through the smallest run: cost proportional to n
        n0, t0 = g["n_train"].min(), g.loc[g["n_train"].idxmin(), "train_s"]
        xs = np.array([n0, g["n_train"].max()])
        ax.plot(xs, t0 * xs / n0, ls="--", color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    plain_log_ticks(ax.yaxis)
    ax.set(xlabel="training images n (log)", ylabel="training seconds (log)",
           title="run time vs subset size (dashed: slope 1)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Book build times
#
# How long `make book` takes per profile is recorded in `benchmarks/RESULTS.md` by
# whoever builds it; GPU rows stay "not yet measured" until a GPU run is made.
