"""The Compute appendix's numbers: the benchmark JSON files read back, and what the full study would cost.

Each benchmark script (``benchmarks/bench_*.py``) writes
``benchmarks/results/<name>-<device>.json`` as ``{"benchmark", "machine", "params",
"rows", ...}``; :func:`load` reads one (None when absent: "not measured"), and the
functions below turn them into the appendix's tables and sentences. :func:`cost_model`
counts the image-epochs of every run a profile's study trains and divides by a measured
throughput.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

BENCHMARKS = {
    "models": "model-only ceiling",
    "e2e": "end-to-end vs ceiling",
    "strategies": "strategy cost per augmented epoch",
    "scaling": "run time vs subset size",
    "numerics": "reproducible vs native CPU kernels",
    "grid": "a grid of runs: worker processes vs one process",
    "build": "the whole default book built cold",
}
DEVICES = ("cpu", "cuda")
NOT_MEASURED = "not measured"


class BenchmarkFileError(ValueError):
    """A benchmark JSON file is not what the benchmark scripts write."""


def load(results_dir: str | Path, name: str, device: str) -> dict[str, Any] | None:
    """The benchmark's JSON, or None when the file does not exist."""
    path = Path(results_dir) / f"{name}-{device}.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise BenchmarkFileError(f"{path}: not a readable benchmark JSON file ({err}); rerun "
                                 f"benchmarks/bench_{name}.py") from err
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not isinstance(data.get("machine"), dict):
        raise BenchmarkFileError(f"{path}: expected a JSON object with 'machine' and 'rows'; rerun "
                                 f"benchmarks/bench_{name}.py")
    return data


def load_all(results_dir: str | Path) -> dict[tuple[str, str], dict[str, Any] | None]:
    """Every benchmark on every device: ``{(name, device): data or None}``."""
    return {(name, dev): load(results_dir, name, dev) for name in BENCHMARKS for dev in DEVICES}


def frame(results: Mapping[tuple[str, str], Any], name: str) -> pd.DataFrame:
    """Every row of benchmark ``name`` over the devices that measured it, with a ``device`` column."""
    parts = [pd.DataFrame(d["rows"]).assign(device=dev) for (n, dev), d in results.items() if n == name and d]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def status_table(results: Mapping[tuple[str, str], Any]) -> pd.DataFrame:
    """One row per benchmark and device: where and when it was measured, or "not measured"."""
    rows = []
    for name, what in BENCHMARKS.items():
        for dev in DEVICES:
            d = results.get((name, dev))
            m = d["machine"] if d else {}
            rows.append({"benchmark": f"{name} ({what})", "device": dev,
                         "measured on": m.get("device_name", "?") if d else NOT_MEASURED,
                         "torch": m.get("torch", ""), "load (1 min)": m.get("load_1min", ""), "date": m.get("date", "")})
    return pd.DataFrame(rows).set_index(["benchmark", "device"])


def e2e_text(results: Mapping[tuple[str, str], Any], device: str) -> str:
    d = results.get(("e2e", device))
    return ", ".join(f"{r['model']} {r['ratio']:.2f}" for r in d["rows"]) if d else NOT_MEASURED


def strategy_text(results: Mapping[tuple[str, str], Any]) -> str:
    """Per device and student: each taught strategy's amortised cost relative to scratch."""
    parts = []
    for dev in DEVICES:
        d = results.get(("strategies", dev))
        if not d:
            parts.append(f"{dev.upper()} {NOT_MEASURED}")
            continue
        share = d.get("params", {}).get("share", "?")
        for student in dict.fromkeys(r["student"] for r in d["rows"]):
            got = {r["strategy"]: r["amortised"] for r in d["rows"] if r["student"] == student and r["strategy"] != "scratch"}
            shown = ", ".join(f"{k} {v:.2f} x" for k, v in got.items())
            parts.append(f"{dev.upper()} {student} (each teacher pass shared by {share} runs): {shown}")
    return "; ".join(parts)


def scaling_text(results: Mapping[tuple[str, str], Any]) -> str:
    out = []
    for dev in DEVICES:
        d = results.get(("scaling", dev))
        if d and "slope_train" in d:
            p = d["params"]
            out.append(f"{dev.upper()} {d['slope_train']:.2f} (whole run {d['slope_total']:.2f}, {p['arch']} "
                       f"{p['image_size']} px, n {min(p['sizes'])}-{max(p['sizes'])})")
        else:
            out.append(f"{dev.upper()} {NOT_MEASURED}")
    return "; ".join(out)


def numerics_text(results: Mapping[tuple[str, str], Any]) -> str:
    """How much slower the reproducible CPU kernels are than the native ones, per architecture."""
    d = results.get(("numerics", "cpu"))
    if not d:
        return NOT_MEASURED
    parts = []
    for arch in dict.fromkeys(r["arch"] for r in d["rows"]):
        rows = {r["setting"]: r for r in d["rows"] if r["arch"] == arch}
        native1 = next(r for k, r in rows.items() if k.startswith("native, 1"))
        parts.append(f"{arch}: native {native1['isa']} on 1 thread takes {native1['vs_reproducible']:.2f} x the "
                     "reproducible epoch time")
    return "; ".join(parts)


def _short(setting: str) -> str:
    return setting.split(":")[0]


def grid_text(results: Mapping[tuple[str, str], Any]) -> str:
    """The parallel grid's speed-ups and busy / quiet ratios, each paired within one call of the benchmark."""
    d = results.get(("grid", "cpu"))
    if not d or not d.get("ratios"):
        return NOT_MEASURED
    words = {"sequential / after": "over one worker in the same numerics (target at least 1.7 x)",
             "before / after": "over the previous runner (one process, native kernels and threads)"}
    parts = []
    for r in d["ratios"]:
        if r["name"] == "busy / quiet":
            parts.append(f"beside a busy loop, {_short(r['setting'])} takes {r['value']:.2f} x its quiet time "
                         f"({r['cpu']})")
        else:
            parts.append(f"{r['value']:.2f} x {words.get(r['name'], r['name'])} ({r['cpu']})")
    return "; ".join(parts)


def store_cpus(root: str | Path) -> list[str]:
    """The CPU models that trained the runs of the results store at ``root`` (each result records its own)."""
    cpus = set()
    for path in Path(root).glob("*/result.json"):
        cpus.add(json.loads(path.read_text()).get("compute", {}).get("cpu", "unknown"))
    return sorted(cpus)


def _which(chapters: str) -> str:
    return "" if chapters == "all" else f", chapters {chapters.replace(',', ', ')} only"


def build_text(results: Mapping[tuple[str, str], Any]) -> str:
    """Each measured cold build of the default book: minutes, ratios of builds on one CPU model, what is missing."""
    d = results.get(("build", "cpu"))
    if not d:
        return NOT_MEASURED
    parts = []
    for r in d["rows"]:
        where = "beside a busy loop" if r["competing process"] else "quiet"
        text = (f"{_short(r['setting'])}, {where}, {r['cpu']}{_which(r['chapters run'])}: "
                f"{r['seconds'] / 60:.0f} min ({r['date'][:10]})")
        same = r.get("published")
        if same:
            text += (f", {same['bitwise same AUC and best epoch']} of its {same['runs']} runs with the published "
                     "test macro-AUC and best epoch, bitwise")
        parts.append(text)
    for r in d.get("ratios", []):
        which = _which(r["chapters run"])
        if r["name"] == "busy / quiet":
            parts.append(f"on {r['cpu']}{which}, {_short(r['setting'])} beside a busy loop takes {r['value']:.2f} x "
                         "its quiet time (target at most 1.5 x)")
        else:
            parts.append(f"on {r['cpu']}{which}, the quiet build before takes {r['value']:.2f} x its time after")
    for cpu in dict.fromkeys(r["cpu"] for r in d["rows"]):
        measured = {(_short(r["setting"]), r["competing process"]) for r in d["rows"]
                    if r["cpu"] == cpu and r["chapters run"] == "all"}
        missing = [f"{s}, {'beside a busy loop' if b else 'quiet'}" for s in ("after", "before") for b in (False, True)
                   if (s, b) not in measured]
        if missing:
            parts.append(f"{NOT_MEASURED} on {cpu} (the whole book): " + ", ".join(missing))
    return "; ".join(parts)


# ============================================================================ the full study's cost
def image_epochs(study, epochs_share: float = 1.0) -> pd.DataFrame:
    """Per kind of run of ``study`` (teacher, init, student): runs and training image-epochs.

    Every run is counted at ``epochs_share`` × its epoch cap (1.0: the upper bound; the
    default build's share of the cap actually used gives a typical figure).
    """
    from kdmed import experiments

    seen: dict[str, tuple[str, int, int]] = {}

    def visit(cfg, kind: str) -> None:
        if cfg.key in seen:
            return
        n = cfg.data.train_n or 0
        seen[cfg.key] = (kind, n, cfg.train.epochs)
        for dep, dep_kind in ((cfg.teacher, "teacher"), (cfg.init, "init")):
            if hasattr(dep, "key"):
                visit(dep, dep_kind)

    for cfg, lab in experiments.teachers(study):
        visit(cfg, "teacher" if lab["role"] == "teacher" else "init")
    for cfg in experiments.everything(study).configs:
        visit(cfg, "student")
    rows = pd.DataFrame(list(seen.values()), columns=["kind", "n", "epochs"])
    rows["image-epochs"] = rows["n"] * rows["epochs"] * epochs_share
    return rows.groupby("kind").agg(runs=("n", "size"), image_epochs=("image-epochs", "sum")).rename(
        columns={"image_epochs": "image-epochs"})


def cost_model(study, images_per_s: float | None, epochs_share: float = 1.0) -> pd.DataFrame:
    """Hours of training per kind of run at ``images_per_s`` (None: not measured), and which kind dominates."""
    table = image_epochs(study, epochs_share)
    table["share"] = table["image-epochs"] / table["image-epochs"].sum()
    table["hours"] = table["image-epochs"] / images_per_s / 3600 if images_per_s else np.nan
    return table


def default_cap_share(profile: str) -> float:
    """The share of their epoch caps that the runs of ``profile``'s results store used (1.0 when none)."""
    from kdmed.utils import repo_root

    path = repo_root() / "results" / profile / "index.csv"
    if not path.is_file():
        return 1.0
    index = pd.read_csv(path)
    return float((index["epochs_run"] / index["epoch_cap"]).mean()) if len(index) else 1.0


def measured_rate(results: Mapping[tuple[str, str], Any], model: str, device: str) -> float | None:
    """Model-only training images/s of ``model`` on ``device`` (the benchmark's row), or None."""
    d = results.get(("models", device))
    if not d:
        return None
    rows = [r for r in d["rows"] if r["model"] == model]
    return float(rows[0]["images_per_s"]) if rows else None
