"""SIGKILL at any moment of a grid, then the same command again: the results equal an uninterrupted run, bitwise.

A supervisor process (this file run as a script) imports kdmed once and forks one
child per attempt; each child runs ``kdmed.cli.main(["run-grid", ...])`` and kills
itself with SIGKILL at a chosen file write, or is killed by the supervisor after a
delay. Forking from a process that has imported torch but run no torch operation
costs nothing per attempt (a cold start imports torch for seconds); the last
attempt is a genuinely cold ``python -m kdmed.cli run-grid`` that completes the
grid. The deterministic kill points hook ``os.replace`` (the rename at the end of
every :func:`kdmed.utils.atomic_path` write) and the writers used inside it:

* ``after``: the file was renamed into place, nothing after it ran;
* ``before``: the temporary file is complete but not renamed (the middle of a write);
* ``mid``: the temporary file is half written (a kill while bytes are going out).

The image cache gets the same treatment in its own test (kills while decoding,
before and after the data file's rename, before the completion marker).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
# the supervisor forks its attempts from a process that has imported kdmed once
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

GRID_YAML = """\
# 3 runs on 32 px synthetic chest X-rays: a teacher on institution B, a scratch
# student and a kd student (augmented: the teacher runs once per epoch's view) on institution C
runs:
  teacher_B:
    data: {dataset: synthetic-chest, image_size: 32, options: {institution: B, n: 128}, val_n: 48, test_n: 48}
    train: &train {epochs: 2, batch_size: 32, lr: 0.001, patience: 5, plateau_patience: 1, augment: false, device: cpu}
  scratch_C:
    data: &data_c {dataset: synthetic-chest, image_size: 32, options: {institution: C, n: 128}, val_n: 48, test_n: 48}
    train: *train
  kd_C:
    data: {<<: *data_c, train_n: 96}
    strategy: kd
    teacher: teacher_B
    temperature: 2.0
    train: {<<: *train, augment: true}
"""

# (where the attempt kills itself: file name, nth write of that name in this process, when;
#  what the store must hold right after it: run -> files)
PLAN = [
    ({"hook": ["config.json", 1, "after"]}, {"teacher_B": ["config.json"]}),
    ({"hook": ["last.pt", 1, "mid"]}, {"teacher_B": ["config.json", ".last.pt.*.tmp"]}),
    ({"hook": ["last.pt", 1, "after"]}, {"teacher_B": ["config.json", "last.pt"]}),
    ({"hook": ["result.json", 1, "before"]},
     {"teacher_B": [".result.json.*.tmp", "config.json", "last.pt", "model.pt", "scores.npz"]}),
    ({"hook": ["result.json", 1, "after"]},
     {"teacher_B": ["config.json", "last.pt", "model.pt", "result.json", "scores.npz"]}),
    ({"hook": ["last.pt", 1, "after"]},
     {"teacher_B": ["config.json", "model.pt", "result.json", "scores.npz"], "scratch_C": ["config.json", "last.pt"]}),
    ({"hook": ["scores.npz", 1, "before"]}, {"scratch_C": [".scores.npz.*.tmp", "config.json", "last.pt", "model.pt"]}),
    ({"hook": ["config.json", 2, "mid"]},
     {"scratch_C": ["config.json", "model.pt", "result.json", "scores.npz"], "kd_C": [".config.json.*.tmp"]}),
    ({"hook": ["last.pt", 1, "after"]}, {"kd_C": ["config.json", "last.pt"]}),
    ({"hook": ["last.pt", 1, "before"]}, {"kd_C": [".last.pt.*.tmp", "config.json", "last.pt"]}),
    ({"hook": ["model.pt", 1, "after"]}, {"kd_C": ["config.json", "last.pt", "model.pt"]}),
]
COMPLETE = ["config.json", "model.pt", "result.json", "scores.npz"]
#: seconds after the fork at which the supervisor kills the timed chain's attempts, growing so
#: that the chain progresses whatever the machine's speed (the whole grid takes about 1 s of
#: an idle core and many seconds on a loaded machine); the chain ends with an attempt left alone
TIMER_DELAYS = [round(0.15 * 1.4**k, 3) for k in range(12)]


# ============================================================================ supervisor (runs as a script)
def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_hook(name: str, nth: int, when: str) -> None:
    """Make this process SIGKILL itself at the ``nth`` write of a file called ``name``."""
    import pathlib

    import torch

    seen = {"n": 0}

    def hit() -> bool:
        seen["n"] += 1
        return seen["n"] == nth

    if when in ("before", "after"):
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == name and hit():
                if when == "after":
                    real_replace(src, dst, *args, **kwargs)
                _die()
            return real_replace(src, dst, *args, **kwargs)

        os.replace = replace
        return
    assert when == "mid", when

    def half_and_die(path) -> None:
        size = Path(path).stat().st_size
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
        _die()

    prefix = f".{name}."  # atomic_path's temporary name
    if name.endswith(".pt"):
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if Path(f).name.startswith(prefix) and hit():
                half_and_die(f)

        torch.save = save
    else:
        real_write = pathlib.Path.write_bytes

        def write_bytes(self, data):
            out = real_write(self, data)
            if self.name.startswith(prefix) and hit():
                half_and_die(self)
            return out

        pathlib.Path.write_bytes = write_bytes


def _listing(store: Path) -> dict[str, list[str]]:
    if not store.is_dir():
        return {}
    return {d.name: sorted(p.name for p in d.iterdir()) for d in sorted(store.iterdir()) if d.is_dir()}


def _fork_attempt(argv: list[str], kill: dict, log: Path) -> dict:
    """Run ``kdmed.cli.main(argv)`` in a forked child, killed as ``kill`` says; how it ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if "hook" in kill:
                _install_hook(*kill["hook"])
            from kdmed import cli

            code = cli.main(argv)
        except BaseException:  # noqa: BLE001 - the child must never return into the supervisor
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    start = time.monotonic()
    if "timer" in kill:
        while time.monotonic() - start < kill["timer"]:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
    else:
        done, status = os.waitpid(pid, 0)
    ended = {"seconds": round(time.monotonic() - start, 2)}
    if os.WIFSIGNALED(status):
        ended["signal"] = os.WTERMSIG(status)
    else:
        ended["exit"] = os.WEXITSTATUS(status)
    return ended


def supervise_grid(work: Path) -> None:
    """Reference run, then the kill chain of :data:`PLAN`, then a cold CLI run; writes ``report.json``."""
    # everything a run imports, imported before the first fork; no torch op runs in this process
    import kdmed.cli  # noqa: F401
    import kdmed.runner  # noqa: F401
    import kdmed.train  # noqa: F401
    from kdmed.data.synthetic import chexpert_frontal_labels

    chexpert_frontal_labels()
    grid, log = work / "grid.yml", work / "children.log"
    report: dict = {}

    def argv(store: str) -> list[str]:
        return ["run-grid", "--config", str(grid), "--results", str(work / store),
                "--table", str(work / f"{store}.csv"), "--no-progress"]

    report["reference"] = _fork_attempt(argv("reference"), {}, log)
    attempts = []
    if report["reference"].get("exit") != 0:
        (work / "report.json").write_text(json.dumps(report, indent=1))
        return
    for kill, _ in PLAN:
        ended = _fork_attempt(argv("killed"), kill, log)
        attempts.append({"kill": kill, **ended, "files": _listing(work / "killed")})
    report["attempts"] = attempts
    # a second chain killed from outside after growing delays, until an attempt gets to finish
    timed = []
    for delay in [*TIMER_DELAYS, None]:
        kill = {} if delay is None else {"timer": delay}
        timed.append({"kill": kill, **_fork_attempt(argv("timed"), kill, log), "files": _listing(work / "timed")})
        if "exit" in timed[-1]:
            break
    report["timed"] = timed
    start = time.monotonic()
    cold = subprocess.run([sys.executable, "-m", "kdmed.cli", *argv("killed")], capture_output=True, text=True)
    report["final"] = {"exit": cold.returncode, "seconds": round(time.monotonic() - start, 2),
                       "stdout": cold.stdout, "stderr": cold.stderr[-3000:]}
    (work / "report.json").write_text(json.dumps(report, indent=1))


def _cache_child(work: Path, kill: dict) -> None:
    """One attempt at building the image cache of the PNGs in ``work/img``, killed as ``kill`` says."""
    from kdmed.data.cache import cached_image_array
    from kdmed.data.folder import FolderDataset

    ds = FolderDataset(sorted((work / "img").glob("*.png")), image_size=24)
    if "row" in kill:  # die while decoding image number ``row``
        load = ds._load_uint8
        ds._load_uint8 = lambda row: _die() if row == kill["row"] else load(row)
    if "hook" in kill:
        _install_hook(*kill["hook"])
    arr = cached_image_array(ds, cache_dir=work / "cache", progress=False, workers=1)
    np.save(work / "array.npy", np.asarray(arr))


def supervise_cache(work: Path) -> None:
    """Kill a cache build at each point of ``cache_plan.json``, then build cleanly; writes ``report.json``."""
    import kdmed.data.cache  # noqa: F401

    plan = json.loads((work / "cache_plan.json").read_text())
    results = []
    for kill in plan:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _cache_child(work, kill)
                code = 0
            except BaseException:  # noqa: BLE001
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        ended = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}
        results.append({"kill": kill, **ended, "files": sorted(p.name for p in (work / "cache").glob("*"))
                        if (work / "cache").is_dir() else []})
    (work / "report.json").write_text(json.dumps(results, indent=1))


# ============================================================================ the tests
def _supervisor(mode: str, work: Path, timeout: float) -> dict | list:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run([sys.executable, str(HERE), mode, str(work)], capture_output=True, text=True,
                          timeout=timeout, env=env)
    log = (work / "children.log").read_text() if (work / "children.log").exists() else ""
    assert proc.returncode == 0, f"supervisor failed:\n{proc.stdout}\n{proc.stderr}\nchildren:\n{log[-4000:]}"
    return json.loads((work / "report.json").read_text())


def _matches(files: list[str], expected: list[str]) -> bool:
    import fnmatch

    return len(files) == len(expected) and all(fnmatch.fnmatch(f, e) for f, e in zip(sorted(files), sorted(expected)))


def _comparable(record: dict) -> dict:
    """A result record without what legitimately differs between runs: timings and the resume point."""
    from kdmed.train import TIMING_COLUMNS

    out = {k: v for k, v in record.items() if k not in ("timings", "resumed_from_epoch")}
    out["history"] = [{k: v for k, v in h.items() if k not in TIMING_COLUMNS} for h in record["history"]]
    return out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")
def test_sigkill_at_any_point_then_rerun_gives_the_uninterrupted_results(tmp_path, capsys):
    import pandas as pd
    import torch

    from kdmed.config import run_key
    from kdmed.config_files import load_configs
    from kdmed.store import ResultStore

    (tmp_path / "grid.yml").write_text(GRID_YAML)
    report = _supervisor("supervise-grid", tmp_path, timeout=400)
    assert report["reference"].get("exit") == 0, (tmp_path / "children.log").read_text()[-4000:]
    configs = {c.name: c for c in load_configs(tmp_path / "grid.yml")}
    name_of = {run_key(c): n for n, c in configs.items()}

    killed = 0
    for i, (attempt, (kill, expected)) in enumerate(zip(report["attempts"], PLAN), start=1):
        # every attempt died by SIGKILL where planned (a child that finished would void the chain)
        assert attempt.get("signal") == signal.SIGKILL, f"attempt {i} ({kill}) was not killed: {attempt}"
        killed += 1
        files = {name_of[k]: v for k, v in attempt["files"].items()}
        for run, want in expected.items():
            assert _matches(files.get(run, []), want), f"attempt {i} ({kill}): {run} holds {files.get(run)}, expected {want}"
    assert killed == len(PLAN) == 11
    final = report["final"]
    assert final["exit"] == 0, final["stderr"]
    assert "3 run(s) complete" in final["stdout"]
    # the timed chain: killed from outside at growing delays, then one attempt finished it
    timed = report["timed"]
    assert timed[-1].get("exit") == 0 and all(t.get("signal") == signal.SIGKILL for t in timed[:-1]), timed
    assert len(timed) >= 2, timed  # at least one kill landed before the grid was done

    ref = ResultStore(tmp_path / "reference")
    for store in ("killed", "timed"):
        got = ResultStore(tmp_path / store)
        for name, cfg in configs.items():
            where = f"{store}/{name}"
            # no leftover: no temporary file, no checkpoint of a finished run
            assert sorted(p.name for p in ref.run_dir(cfg).iterdir()) == COMPLETE
            assert sorted(p.name for p in got.run_dir(cfg).iterdir()) == COMPLETE, where
            assert _comparable(ref.load_result(cfg)) == _comparable(got.load_result(cfg)), where
            with np.load(ref.run_dir(cfg) / "scores.npz") as za, np.load(got.run_dir(cfg) / "scores.npz") as zb:
                assert za.files == zb.files
                for k in za.files:
                    assert za[k].dtype == zb[k].dtype and za[k].tobytes() == zb[k].tobytes(), (where, k)
            ma = torch.load(ref.run_dir(cfg) / "model.pt", weights_only=True)
            mb = torch.load(got.run_dir(cfg) / "model.pt", weights_only=True)
            assert ma.keys() == mb.keys()
            assert all(torch.equal(ma["model"][k], mb["model"][k]) for k in ma["model"]), where
            assert {k: v for k, v in ma.items() if k != "model"} == {k: v for k, v in mb.items() if k != "model"}
        table_ref = pd.read_csv(tmp_path / "reference.csv").drop(columns=["train_seconds"])
        table_got = pd.read_csv(tmp_path / f"{store}.csv").drop(columns=["train_seconds"])
        pd.testing.assert_frame_equal(table_ref, table_got, check_exact=True)
        assert list(table_got["name"]) == ["teacher_B", "scratch_C", "kd_C"]
    # the last planned kill (after the kd run's model.pt) left its final checkpoint: the cold run resumed it
    assert ResultStore(tmp_path / "killed").load_result(configs["kd_C"])["resumed_from_epoch"] == 2
    assert ref.load_result(configs["kd_C"])["resumed_from_epoch"] == 0
    assert ref.load_result(configs["kd_C"])["teacher_mode"] == "shared"
    _check_status_cli(tmp_path, configs, capsys)
    print(f"kills survived: {killed} planned + {len(timed) - 1} timed; reference grid {report['reference']['seconds']} s")


def _check_status_cli(tmp_path, configs, capsys) -> None:
    """``status`` lists the runs; a tampered result stops ``run-grid`` with exit code 1 before anything trains."""
    from kdmed import cli
    from kdmed.store import ResultStore

    grid, results = str(tmp_path / "grid.yml"), str(tmp_path / "timed")
    assert cli.main(["status", "--results", results]) == 0
    out = capsys.readouterr().out
    assert out.count(" complete") == 3 and all(name in out for name in configs)
    path = ResultStore(results).run_dir(configs["scratch_C"]) / "result.json"
    record = json.loads(path.read_text())
    record["key_config"]["seed"] = 9
    path.write_text(json.dumps(record))
    assert cli.main(["status", "--results", results, "--config", grid]) == 0
    out = capsys.readouterr().out
    assert out.count(" complete") == 2 and "stale" in out
    assert cli.main(["run-grid", "--config", grid, "--results", results, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: StaleResultError: {path} is stale for run 'scratch_C'" in err and "delete" in err


def test_image_cache_survives_sigkill_at_every_step(tmp_path):
    from PIL import Image

    from kdmed.data.cache import cache_key
    from kdmed.data.folder import FolderDataset

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (30, 20), dtype=np.uint8)).save(tmp_path / "img" / f"{i:02d}.png")
    ds = FolderDataset(sorted((tmp_path / "img").glob("*.png")), image_size=24)
    key = cache_key(ds)
    data, marker = f"{key}.u8", f"{key}.json"
    plan = [
        {"row": 7},                             # while decoding: the data file is a half-filled temp file
        {"hook": [data, 1, "before"]},          # data complete, not renamed
        {"hook": [data, 1, "after"]},           # data renamed, no marker yet
        {"hook": [marker, 1, "mid"]},           # marker half written
        {"hook": [marker, 1, "before"]},        # marker complete, not renamed
        {},                                     # a clean build
        {},                                     # and a cache hit
    ]
    (tmp_path / "cache_plan.json").write_text(json.dumps(plan))
    report = _supervisor("supervise-cache", tmp_path, timeout=120)
    assert [r.get("signal") for r in report[:5]] == [signal.SIGKILL] * 5, report
    assert [r.get("exit") for r in report[5:]] == [0, 0], report
    visible = [[f for f in r["files"] if not f.startswith(".")] for r in report]
    # the marker never appears before the data is complete, and a data file without marker is not trusted
    assert visible[:5] == [[], [], [data], [data], [data]]
    assert visible[5] == visible[6] == sorted([data, marker])
    arr = np.load(tmp_path / "array.npy")
    expected = np.stack([ds._load_uint8(i) for i in range(len(ds))])
    assert arr.dtype == np.uint8 and np.array_equal(arr, expected)
    info = json.loads((tmp_path / "cache" / marker).read_text())
    assert info["complete"] is True and info["key"] == key


if __name__ == "__main__":
    mode, work = sys.argv[1], Path(sys.argv[2])
    {"supervise-grid": supervise_grid, "supervise-cache": supervise_cache}[mode](work)
