"""Command line for experiment grids: run them (resumably, in parallel), inspect a results folder, torchrun.

``python -m kdmed.cli run-grid --config grid.yml --results results/mygrid [--table grid.csv] [--workers N]``
reads named runs and grids from a YAML file (the format of
:func:`kdmed.config_files.load_configs`), trains every run that has no valid stored
result (dependencies first, in parallel worker processes) and prints one summary
row per run. Running the same command again after an interruption (Ctrl-C, a
crash, ``kill -9``, a lost machine) skips the completed runs, resumes an
unfinished run from its last epoch checkpoint and gives the same numbers as an
uninterrupted run.

``python -m kdmed.cli status --results results/mygrid [--config grid.yml]`` lists
every run folder (complete / partial / stale, with the reason) or, with
``--config``, the status of each configured run.

``torchrun --nproc_per_node=2 -m kdmed.cli train-ddp --config run.yml --results results/x``
trains every run of the file (one run's fields, or a ``runs:`` mapping) with
DistributedDataParallel across the processes torchrun starts.

Exit codes: 0 success, 1 a run failed or a stored result is stale, 2 the
configuration file is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

#: summary columns printed by run-grid (the --table CSV holds every column)
SHOWN = ("name", "strategy", "teacher", "n_train", "seed", "macro_auc", "best_epoch", "epochs_run")


def _parser() -> argparse.ArgumentParser:
    from kdmed.distributed import BACKENDS

    parser = argparse.ArgumentParser(prog="python -m kdmed.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-grid", help="train every configured run without a stored result; resumable")
    run.add_argument("--config", required=True, help="YAML file of named runs and grids (see kdmed.config_files.load_configs)")
    run.add_argument("--results", required=True, help="results folder (a kdmed.store.ResultStore)")
    run.add_argument("--table", default=None, help="also write the summary table to this CSV file")
    run.add_argument("--workers", type=int, default=None, help="worker processes (default: the CPUs available)")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress lines (default: on when stderr is a terminal)")
    status = sub.add_parser("status", help="list the runs of a results folder and their status")
    status.add_argument("--results", required=True, help="results folder (a kdmed.store.ResultStore)")
    status.add_argument("--config", default=None, help="report the status of these configured runs instead")
    ddp = sub.add_parser("train-ddp", help="under torchrun: train the run(s) of a YAML file with DDP")
    ddp.add_argument("--config", required=True, help="YAML: one run's fields, or a 'runs:' mapping")
    ddp.add_argument("--results", required=True, help="results store folder (kdmed.store.ResultStore)")
    ddp.add_argument("--run", action="append", default=None,
                     help="with a 'runs:' file, train only the run(s) with this name (repeatable)")
    ddp.add_argument("--backend", choices=BACKENDS, default=None, help="default: nccl on CUDA, gloo on CPU")
    ddp.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def read_configs(path: str | Path, names: Sequence[str] | None = None) -> list:
    """The run configs of a YAML file: one run's fields, or a ``runs:`` mapping filtered by ``names``."""
    import yaml

    from kdmed.config_files import load_config, load_configs

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read the run config ({err})") from err
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from err
    if isinstance(data, dict) and "runs" in data:
        configs = load_configs(path)
        if names:
            known = [c.name for c in configs]
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"{path}: no run named {unknown}; runs in the file: {known}")
            configs = [c for c in configs if c.name in names]
        return configs
    if names:
        raise ValueError(f"{path} holds a single run; --run only applies to a 'runs:' file")
    return [load_config(path)]


def _load(config: str):
    from kdmed.config_files import load_configs

    path = Path(config)
    if not path.is_file():
        raise ValueError(f"{path}: grid configuration file not found")
    return load_configs(path)


def _run_grid(args: argparse.Namespace, configs: list) -> int:
    import pandas as pd

    from kdmed.grid import run_grid
    from kdmed.store import ResultStore
    from kdmed.utils import atomic_path

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    store = ResultStore(args.results)
    table = run_grid(configs, store, progress=progress, workers=args.workers)
    if args.table:
        with atomic_path(args.table) as tmp:
            table.to_csv(tmp, index=False)
    with pd.option_context("display.width", 160, "display.max_columns", None):
        print(table[[c for c in SHOWN if c in table.columns]].to_string(index=False))
    print(f"{len(configs)} run(s) complete in {store.root}; {len(store.trained)} trained by this call")
    return 0


def _status(args: argparse.Namespace, configs: list | None) -> int:
    import pandas as pd

    from kdmed.store import ResultStore, StaleResultError

    store = ResultStore(args.results)
    if configs is None:
        frame = store.scan()
    else:
        rows = []
        for cfg in configs:
            try:
                status, reason = store.status(cfg), store.stale_reason(cfg) or ""
            except StaleResultError as err:
                status, reason = "stale", str(err)
            rows.append({"key": cfg.key, "name": cfg.name, "status": status, "reason": reason})
        frame = pd.DataFrame(rows, columns=["key", "name", "status", "reason"])
    if frame.empty:
        print(f"no runs in {store.root}")
    else:
        with pd.option_context("display.width", 160, "display.max_colwidth", 80):
            print(frame.to_string(index=False))
    return 0


def _train_ddp(args: argparse.Namespace) -> int:
    from kdmed import distributed
    from kdmed.devices import resolve_device
    from kdmed.runner import run_one
    from kdmed.store import ResultStore

    configs = read_configs(args.config, args.run)
    devices = {resolve_device(c.train.device) for c in configs}
    if len(devices) != 1:
        raise ValueError(f"{args.config}: all runs must train on one kind of device, got {sorted(devices)}")
    layout = distributed.init_from_env(args.backend, devices.pop())
    try:
        store = ResultStore(args.results)
        for cfg in configs:
            result = run_one(cfg, store, quiet=args.quiet)
            if distributed.is_main_process():
                test_auc = result["metrics"].get("macro_auc")
                print(f"{cfg.name}: key {result['key']} best val macro-AUC {result['best_val_macro_auc']:.4f} "
                      f"(epoch {result['best_epoch']}), test macro-AUC "
                      f"{'n/a' if test_auc is None else format(test_auc, '.4f')}, {layout.world_size} process(es)",
                      flush=True)
    finally:
        distributed.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "train-ddp":
        try:
            return _train_ddp(args)
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"kdmed.cli train-ddp: error (rank {os.environ.get('RANK', '0')}): {err}", file=sys.stderr)
            return 2
    try:
        # a bad configuration is reported before anything trains
        configs = _load(args.config) if args.config is not None else None
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return _run_grid(args, configs) if args.command == "run-grid" else _status(args, configs)
    except (ValueError, OSError, RuntimeError, ArithmeticError) as err:
        # the message names the culprit; book/troubleshooting.md lists the fixes
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
