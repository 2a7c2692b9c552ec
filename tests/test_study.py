"""The study's run configurations, the summaries the chapters show, and the claims table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dataclasses

from kdmed.analysis import mean_table, pooled_gain, verdict
from kdmed.claims import measure_claims
from kdmed.config import RunConfig
from kdmed.methods import METHODS
from kdmed.store import load_result
from kdmed.study import Study, StudyError, cross_domain_grid, grid, regularization_grid

TINY = dict(image_size=32, teacher_n=60, pretrain_n=60, target_n=40, target_sizes=(40,), val_n=40, test_n=60,
            seeds=(0, 1), epochs=1, teacher_epochs=1, batch_size=16, lr=0.003, patience=1, device="cpu",
            teacher_arch="small_cnn")


def _study(**changes) -> Study:
    return dataclasses.replace(Study.from_profile("default"), **changes)


def test_methods_wire_strategy_init_and_teacher():
    s = _study()
    for name, m in METHODS.items():
        cfg = s.student(name, 250, seed=3)
        assert cfg.strategy == m.strategy
        assert isinstance(cfg.init, RunConfig) == m.pretrained
        assert (cfg.teacher is not None) == m.taught
        assert (cfg.freeze_through is not None) == m.frozen
        assert cfg.data.train_n == 250 and cfg.data.subset_seed == 3 and cfg.seed == 3
        assert cfg.data.option_dict == {"institution": "C"}
    assert s.student("transfer-frozen", 250, 0).freeze_through == "block3"
    kd = s.student("transfer+kd", 250, 0)
    assert kd.init.data.option_dict == {"institution": "A"} and kd.init.arch == s.student_arch
    assert kd.teacher.data.option_dict == {"institution": "C"} and kd.teacher.arch == s.teacher_arch
    assert s.teacher(role="other-chest").data.option_dict == {"institution": "B"}


def test_the_teacher_chapter_and_the_students_name_the_same_cached_run():
    s = _study()
    assert s.teacher().key == s.student("kd", 500, 1).teacher.key
    assert s.pretrained_init().key == s.student("transfer", 500, 1).init.key
    # a weaker teacher is another run
    assert s.teacher(train_n=500).key != s.teacher().key


def test_grid_sizes_and_labels():
    s = _study()
    configs, labels = grid(s, ["scratch", "kd"], [100, 200, 400], [0, 1])
    assert len(configs) == 12 and [lab["method"] for lab in labels].count("kd") == 6
    assert len({c.key for c in configs}) == 12


def test_cross_domain_grid_uses_attention_only_for_another_label_space():
    s = _study(seeds=(0,))
    configs, labels = cross_domain_grid(s, ["transfer", "kd", "at", "kd+at"])
    fundus = [(c, lab) for c, lab in zip(configs, labels) if lab["domain"].startswith("fundus")]
    assert sorted(lab["method"] for _, lab in fundus) == ["at", "transfer"]
    for c, lab in fundus:
        source = c.teacher if lab["method"] == "at" else c.init
        assert source.data.dataset == "synthetic-fundus"
    assert len(configs) == 1 + 4 + 4 + 4 + 2
    # real data: the other dataset has another label space, so it teaches by attention only
    real = _study(setting="chexpert")
    assert real.same_label_space("teacher") and not real.same_label_space("other-chest")


def test_regularization_runs_do_not_stop_early():
    s = _study(epochs=7, patience=2)
    configs, _ = regularization_grid(s, ["scratch", "kd"])
    assert all(c.train.patience == 7 for c in configs)


def test_real_settings_name_the_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="chexpert_root"):
        _study(setting="chexpert").target_data()
    assert _study(setting="chestxray8", nih_root=str(tmp_path)).missing_roots() == ["chexpert_root = None"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _study(setting="chexpert", chexpert_root=str(tmp_path / "nowhere")).target_data()
    with pytest.raises(ValueError, match="setting must be one of"):
        _study(setting="imagenet")


def test_mean_table_matches_a_hand_t_interval():
    table = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 2, "macro_auc": [0.6, 0.7, 0.8, 0.5, 0.5]})
    out = mean_table(table, ["method"]).set_index("method")
    half = 4.302652729911275 * 0.1 / np.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert out.loc["a", "mean"] == pytest.approx(0.7)
    assert out.loc["a", "low"] == pytest.approx(0.7 - half) and out.loc["a", "high"] == pytest.approx(0.7 + half)
    assert out.loc["b", "n"] == 2 and out.loc["b", "low"] == pytest.approx(0.5)


def test_verdicts_follow_the_interval():
    assert verdict(0.01, 0.05, 0.03) == "reproduced"
    assert verdict(-0.05, -0.01, -0.03) == "contradicted"
    assert verdict(-0.01, 0.05, 0.02) == "inconclusive"
    assert verdict(np.nan, np.nan, 0.02).startswith("inconclusive (one seed")
    assert verdict(np.nan, np.nan, np.nan) == "not measured"


def test_pooled_gain_averages_seeds():
    pairs = pd.DataFrame({"diff": [0.02, 0.04], "relative_pct": [2.0, 4.0]})
    g = pooled_gain(pairs)
    assert g["diff"] == pytest.approx(0.03) and g["relative_pct"] == pytest.approx(3.0) and g["n"] == 2
    assert g["low"] < 0.03 < g["high"]


@pytest.mark.slow
def test_claims_are_measured_from_cached_runs_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_RESULTS_DIR", str(tmp_path))
    s = _study(profile="tiny", **TINY)
    before = measure_claims(s).set_index("claim")
    assert (before["verdict"] == "not run under this profile").all()

    kd = [s.student("kd", 40, seed) for seed in s.seeds]
    tr = [s.student("transfer", 40, seed) for seed in s.seeds]
    s.run(kd + tr, progress=False)
    after = measure_claims(s).set_index("claim")
    store = s.store()
    diffs = [load_result(a, store)["metrics"]["macro_auc"] - load_result(b, store)["metrics"]["macro_auc"]
             for a, b in zip(kd, tr)]
    text = after.loc["chexpert_gain", "our measurement"]
    assert f"{np.mean(diffs):+.4f} AUC points" in text and "synthetic stand-in" in text
    assert after.loc["chexpert_gain", "verdict"] == verdict(*_t_bounds(diffs), np.mean(diffs))
    assert after.loc["cross_domain", "verdict"] == "not run under this profile"
    assert after.loc["chexpert_gain", "paper's figure"].startswith("+4 %")


def _t_bounds(values):
    from kdmed.metrics import mean_ci

    ci = mean_ci(np.asarray(values))
    return ci["low"], ci["high"]


def test_each_study_value_lives_in_the_profile_only(repo):
    """Chapters declare only ``profile``; every study value comes from the profile YAML."""
    from kdmed.profiles import available_profiles, chapter_parameters, load_profile

    chapters = sorted((repo / "book").glob("0*.py"))
    assert len(chapters) == 6
    for path in chapters:
        assert chapter_parameters(path) == {"profile": "default"}, path.name
    required = {f.name for f in dataclasses.fields(Study) if f.default is dataclasses.MISSING} - {"profile"}
    for name in available_profiles():
        assert required <= set(load_profile(name).study), name
        Study.from_profile(name)  # valid
    # Study has no default of its own for a knob (only the dataset folders, which are machine paths)
    defaulted = {f.name for f in dataclasses.fields(Study) if f.default is not dataclasses.MISSING}
    assert defaulted == {"chexpert_root", "nih_root", "dr_root"}


def test_overrides_are_checked_and_papermill_strings_read_as_yaml():
    s = Study.from_profile("smoke", {"seeds": "[0, 1, 2]", "temperature": 2, "teacher_n": None})
    assert s.seeds == (0, 1, 2) and s.temperature == 2.0 and isinstance(s.temperature, float) and s.teacher_n is None
    with pytest.raises(StudyError, match=r"seeds expects a list, got int 3"):
        Study.from_profile("smoke", {"seeds": 3})
    with pytest.raises(StudyError, match=r"epochs expects an int, got str 'many'"):
        Study.from_profile("smoke", {"epochs": "many"})
    with pytest.raises(StudyError, match=r"override\(s\) \['temprature'\] are not study parameters"):
        Study.from_profile("smoke", {"temprature": 2.0})
    with pytest.raises(StudyError, match="missing study parameter"):
        Study.from_mapping({"profile": "x", "setting": "synthetic"})


def test_a_chapter_namespace_takes_the_injected_study_fields():
    s = Study.from_namespace({"profile": "smoke", "temperature": 8.0, "plt": object(), "seeds": "[5]"})
    assert s.temperature == 8.0 and s.seeds == (5,) and s.profile == "smoke"
