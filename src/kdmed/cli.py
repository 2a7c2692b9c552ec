"""Command line for experiment grids: run them (resumably) and inspect a results folder.

``python -m kdmed.cli run-grid --config grid.yml --results results/mygrid [--table grid.csv]``
reads named runs and grids from a YAML file (the format of
:func:`kdmed.runner.load_configs`), trains every run that has no stored result
(dependencies first) and prints one summary row per run. Running the same
command again after an interruption (Ctrl-C, a crash, ``kill -9``, a lost
machine) skips the completed runs, resumes an unfinished run from its last
epoch checkpoint and gives the same numbers as an uninterrupted run.

``python -m kdmed.cli status --results results/mygrid [--config grid.yml]`` lists
every run folder (complete / partial / stale) or, with ``--config``, the status of
each configured run.

Exit codes: 0 success, 1 a run failed or a stored result is stale, 2 the
configuration file is invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

#: summary columns printed by run-grid (the --table CSV holds every column)
SHOWN = ("name", "strategy", "teacher", "n_train", "seed", "macro_auc", "best_epoch", "epochs_run")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kdmed.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-grid", help="train every configured run without a stored result; resumable")
    run.add_argument("--config", required=True, help="YAML file of named runs and grids (see kdmed.runner.load_configs)")
    run.add_argument("--results", required=True, help="results folder (a kdmed.runner.ResultStore)")
    run.add_argument("--table", default=None, help="also write the summary table to this CSV file")
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bars (default: on when stderr is a terminal)")
    status = sub.add_parser("status", help="list the runs of a results folder and their status")
    status.add_argument("--results", required=True, help="results folder (a kdmed.runner.ResultStore)")
    status.add_argument("--config", default=None, help="report the status of these configured runs instead")
    return parser


def _load(config: str):
    from kdmed.runner import load_configs

    path = Path(config)
    if not path.is_file():
        raise ValueError(f"{path}: grid configuration file not found")
    return load_configs(path)


def _run_grid(args: argparse.Namespace, configs: list) -> int:
    import pandas as pd

    from kdmed.runner import ResultStore, run_grid
    from kdmed.utils import atomic_path

    progress = sys.stderr.isatty() if args.progress is None else args.progress
    store = ResultStore(args.results)
    table = run_grid(configs, store, progress=progress, quiet=not progress)
    if args.table:
        with atomic_path(args.table) as tmp:
            table.to_csv(tmp, index=False)
    with pd.option_context("display.width", 160, "display.max_columns", None):
        print(table[[c for c in SHOWN if c in table.columns]].to_string(index=False))
    print(f"{len(configs)} run(s) complete in {store.root}; {len(store.trained)} trained by this call")
    return 0


def _status(args: argparse.Namespace, configs: list | None) -> int:
    import pandas as pd

    from kdmed.runner import ResultStore, StaleResultError

    store = ResultStore(args.results)
    if configs is None:
        frame = store.scan()
    else:
        rows = []
        for cfg in configs:
            try:
                status, reason = store.status(cfg), ""
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
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
