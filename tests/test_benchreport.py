"""The Compute appendix's readers of the benchmark JSON files, and the full study's cost model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

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


def test_grid_and_build_texts_pair_what_was_measured_and_name_what_was_not(tmp_path):
    results = br.load_all(tmp_path)
    assert br.grid_text(results) == br.NOT_MEASURED and br.build_text(results) == br.NOT_MEASURED
    _write(tmp_path, "grid", "cpu", [], ratios=[
        {"name": "sequential / after", "setting": "after: 2 worker processes", "value": 1.93, "cpu": "AMD EPYC"},
        {"name": "busy / quiet", "setting": "after: 2 worker processes", "value": 1.48, "cpu": "Intel Xeon"}])
    after = "after: one worker process per core"
    _write(tmp_path, "build", "cpu", [
        {"setting": after, "competing process": False, "seconds": 2400.0, "cpu": "Intel Xeon", "chapters run": "all",
         "date": "2026-12-02T12:00:00+0000", "published": {"runs": 172, "bitwise same AUC and best epoch": 172}},
        {"setting": after, "competing process": True, "seconds": 3300.0, "cpu": "Intel Xeon", "chapters run": "all",
         "date": "2026-12-03T12:00:00+0000"},
        {"setting": after, "competing process": True, "seconds": 3000.0, "cpu": "AMD EPYC", "chapters run": "all",
         "date": "2026-12-04T12:00:00+0000"},
        {"setting": after, "competing process": False, "seconds": 600.0, "cpu": "AMD EPYC",
         "chapters run": "01_data,02_teacher", "date": "2026-12-04T13:00:00+0000"}],
        ratios=[{"name": "busy / quiet", "setting": after, "value": 1.375, "cpu": "Intel Xeon", "chapters run": "all"}])
    results = br.load_all(tmp_path)
    assert br.grid_text(results) == (
        "1.93 x over one worker in the same numerics (target at least 1.7 x) (AMD EPYC); "
        "beside a busy loop, after takes 1.48 x its quiet time (Intel Xeon)")
    text = br.build_text(results)
    assert text.startswith("after, quiet, Intel Xeon: 40 min (2026-12-02), 172 of its 172 runs with the published "
                           "test macro-AUC and best epoch, bitwise; after, beside a busy loop, Intel Xeon: 55 min "
                           "(2026-12-03); after, beside a busy loop, AMD EPYC: 50 min (2026-12-04); after, quiet, "
                           "AMD EPYC, chapters 01_data, 02_teacher only: 10 min (2026-12-04); ")
    assert "on Intel Xeon, after beside a busy loop takes 1.38 x its quiet time (target at most 1.5 x)" in text
    assert text.endswith("not measured on Intel Xeon (the whole book): before, quiet, before, beside a busy loop; "
                         "not measured on AMD EPYC (the whole book): after, quiet, before, quiet, before, beside a "
                         "busy loop")


def test_benchmark_ratios_pair_builds_on_one_cpu_model_and_grid_rows_of_one_call(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_build
    import bench_grid

    after, before = (bench_build.SETTINGS[s]["label"] for s in ("after", "before"))
    rows = [{"setting": after, "competing process": False, "seconds": 100.0, "cpu": "A"},
            {"setting": after, "competing process": True, "seconds": 130.0, "cpu": "A"},
            {"setting": before, "competing process": False, "seconds": 150.0, "cpu": "A"},
            {"setting": after, "competing process": True, "seconds": 200.0, "cpu": "B"},
            {"setting": after, "competing process": True, "seconds": 50.0, "cpu": "A", "chapters run": "01_data"}]
    rows = [{"chapters run": "all", **r} for r in rows]
    assert bench_build.ratios(rows) == [
        {"name": "busy / quiet", "setting": after, "cpu": "A", "chapters run": "all", "value": 1.3},
        {"name": "before / after", "setting": after, "cpu": "A", "chapters run": "all", "value": 1.5}]
    sequential, after = bench_grid.SETTINGS["sequential"], bench_grid.SETTINGS["after"].format(cores=2)
    grid = [{"setting": sequential, "competing process": False, "seconds": 180.0, "run": "1", "cpu": "A"},
            {"setting": after, "competing process": False, "seconds": 100.0, "run": "1", "cpu": "A"},
            {"setting": after, "competing process": True, "seconds": 150.0, "run": "2", "cpu": "B"}]
    assert bench_grid.summary(grid) == [
        {"name": "sequential / after", "setting": after, "value": 1.8, "cpu": "A", "run": "1"}]


def test_store_cpus_lists_the_cpu_models_recorded_by_the_runs(tmp_path):
    assert br.store_cpus(tmp_path) == []
    for key, cpu in (("a", "Intel Xeon"), ("b", "AMD EPYC"), ("c", "Intel Xeon")):
        (tmp_path / key).mkdir()
        (tmp_path / key / "result.json").write_text(json.dumps({"compute": {"cpu": cpu}}))
    assert br.store_cpus(tmp_path) == ["AMD EPYC", "Intel Xeon"]
