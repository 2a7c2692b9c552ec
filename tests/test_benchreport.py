"""The Compute appendix's readers of the benchmark JSON files, and the full study's cost model."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kdmed import benchreport as br
from kdmed.study import Study


def _write(folder, name, device, rows, **extra):
    (folder / f"{name}-{device}.json").write_text(json.dumps({"benchmark": name, "machine": {
        "device_name": "test CPU", "torch": "2.14.1", "date": "2026-12-01"}, "params": extra.pop("params", {}),
        "rows": rows, **extra}))


def test_missing_files_are_not_measured_and_bad_ones_are_named(tmp_path):
    assert br.load(tmp_path, "models", "cpu") is None
    results = br.load_all(tmp_path)
    assert br.status_table(results)["measured on"].eq(br.NOT_MEASURED).all()
    assert br.e2e_text(results, "cuda") == br.NOT_MEASURED and br.numerics_text(results) == br.NOT_MEASURED
    (tmp_path / "e2e-cpu.json").write_text("{not json")
    with pytest.raises(br.BenchmarkFileError, match=r"e2e-cpu.json: not a readable benchmark JSON file"):
        br.load(tmp_path, "e2e", "cpu")
    (tmp_path / "e2e-cpu.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(br.BenchmarkFileError, match="expected a JSON object with 'machine' and 'rows'"):
        br.load(tmp_path, "e2e", "cpu")


def test_texts_read_what_the_benchmarks_wrote(tmp_path):
    _write(tmp_path, "e2e", "cpu", [{"model": "small_cnn", "ratio": 0.891}])
    _write(tmp_path, "strategies", "cpu", [
        {"student": "small_cnn", "strategy": "scratch", "amortised": 1.0},
        {"student": "small_cnn", "strategy": "kd", "amortised": 1.14}], params={"share": 6})
    _write(tmp_path, "numerics", "cpu", [
        {"arch": "small_cnn", "setting": "reproducible", "isa": "AVX2", "vs_reproducible": 1.0},
        {"arch": "small_cnn", "setting": "native, 1 thread", "isa": "AVX512", "vs_reproducible": 0.77}])
    _write(tmp_path, "models", "cpu", [{"model": "densenet121", "images_per_s": 4.2}])
    results = br.load_all(tmp_path)
    assert br.e2e_text(results, "cpu") == "small_cnn 0.89"
    assert "small_cnn (each teacher pass shared by 6 runs): kd 1.14 x" in br.strategy_text(results)
    assert "native AVX512 on 1 thread takes 0.77 x" in br.numerics_text(results)
    assert br.measured_rate(results, "densenet121", "cpu") == 4.2 and br.measured_rate(results, "x", "cpu") is None
    assert set(br.frame(results, "e2e")["device"]) == {"cpu"}


def test_cost_model_counts_every_run_once_at_its_cap():
    study = dataclasses.replace(Study.from_profile("smoke"))
    table = br.image_epochs(study)
    from kdmed import experiments

    networks = {c.key for c in experiments.teachers(study).configs}
    students = {c.key: c for c in experiments.everything(study).configs if c.key not in networks}
    expected = sum(c.data.train_n * c.train.epochs for c in students.values())
    assert table.loc["teacher", "runs"] >= len(study.teacher_pool_sizes) and table.loc["init", "runs"] >= 4
    assert table.loc["student", "image-epochs"] == pytest.approx(expected)
    cost = br.cost_model(study, images_per_s=100.0)
    assert cost["hours"].sum() == pytest.approx(cost["image-epochs"].sum() / 100 / 3600)
    assert cost["share"].sum() == pytest.approx(1.0)
    assert br.cost_model(study, None)["hours"].isna().all()
