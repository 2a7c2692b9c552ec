"""Reproducible numerics: the same run gives the same bits whatever the process's native thread/ISA settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from kdmed import numerics

SCRIPT = textwrap.dedent('''
    import hashlib, json, sys
    import kdmed
    from kdmed.config import DataSpec, RunConfig, TrainSpec
    from kdmed.runner import run_one
    from kdmed.store import ResultStore

    cfg = RunConfig(name="r", data=DataSpec("synthetic-chest", image_size=32,
                    options={"institution": "C", "n": 96}, val_n=32, test_n=32),
                    train=TrainSpec(epochs=2, batch_size=16, lr=1e-3, augment=True, train_eval_n=0, device="cpu"))
    store = ResultStore(sys.argv[1])
    result = run_one(cfg, store, quiet=True)
    scores = store.load_scores(cfg)
    losses = [h["train_loss"] for h in result["history"]]
    print(json.dumps({"scores": hashlib.sha256(scores["y_score"].tobytes()).hexdigest(), "losses": losses,
                      "compute": result["compute"]}))
''')


def _run(tmp_path, name: str, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV and k != numerics.NUMERICS_ENV}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / name)], env={**clean, **env},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_reproducible_mode_gives_bitwise_equal_runs_under_different_native_settings(tmp_path):
    a = _run(tmp_path, "a", {"KDMED_NUMERICS": "reproducible", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
                             "ATEN_CPU_CAPABILITY": "default"})
    b = _run(tmp_path, "b", {"KDMED_NUMERICS": "reproducible", "OMP_NUM_THREADS": "1"})
    assert a["scores"] == b["scores"] and a["losses"] == b["losses"]
    for rec in (a, b):
        assert rec["compute"]["isa"] == numerics.PINNED_ISA and rec["compute"]["threads"] == 1
        assert rec["compute"]["numerics"] == "reproducible"
    native = _run(tmp_path, "c", {"KDMED_NUMERICS": "native"})
    assert native["compute"]["numerics"] == "native"
    # native kernels may differ in the last bits on a CPU with AVX-512; the record says which were used
    assert native["compute"]["isa"] in ("DEFAULT", "AVX2", "AVX512", "AVX512_BF16", "AMX", "ZVECTOR", "VSX", "NEON")


def test_an_unknown_mode_is_refused(monkeypatch):
    monkeypatch.setenv("KDMED_NUMERICS", "fast")
    with pytest.raises(numerics.NumericsError, match="KDMED_NUMERICS='fast' is not a numerics mode"):
        numerics.mode()


def test_labels_and_comparisons():
    rec = {"numerics": "reproducible", "isa": "AVX2", "threads": 1, "torch": "2.14.1", "device": "cpu"}
    assert numerics.numerics_label(rec) == "reproducible (AVX2, 1 thread, cpu)"
    assert numerics.comparable(rec, dict(rec))
    assert not numerics.comparable(rec, {**rec, "isa": "AVX512"})
