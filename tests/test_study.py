"""The study's run configurations, the summaries the chapters show, and the claims table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdmed.analysis import mean_table, pooled_gain, verdict
from kdmed.claims import measure_claims
from kdmed.runner import RunConfig, load_result
from kdmed.study import METHODS, Study, cross_domain_grid, grid, regularization_grid

TINY = dict(image_size=32, teacher_n=60, pretrain_n=60, target_n=40, target_sizes=(40,), val_n=40, test_n=60,
            seeds=(0, 1), epochs=1, teacher_epochs=1, batch_size=16, lr=0.003, patience=1, device="cpu",
            teacher_arch="small_cnn")


def test_methods_wire_strategy_init_and_teacher():
    s = Study()
    for method, (strategy, pretrained, taught) in METHODS.items():
        cfg = s.student(method, 250, seed=3)
        assert cfg.strategy == strategy
        assert isinstance(cfg.init, RunConfig) == pretrained
        assert (cfg.teacher is not None) == taught
        assert cfg.data.train_n == 250 and cfg.data.subset_seed == 3 and cfg.seed == 3
        assert cfg.data.option_dict == {"institution": "C"}
    kd = s.student("transfer+kd", 250, 0)
    assert kd.init.data.option_dict == {"institution": "A"} and kd.init.arch == s.student_arch
    assert kd.teacher.data.option_dict == {"institution": "C"} and kd.teacher.arch == s.teacher_arch
    assert s.teacher(role="other-chest").data.option_dict == {"institution": "B"}


def test_the_teacher_chapter_and_the_students_name_the_same_cached_run():
    s = Study()
    assert s.teacher().key == s.student("kd", 500, 1).teacher.key
    assert s.pretrained_init().key == s.student("transfer", 500, 1).init.key
    # a weaker teacher is another run
    assert s.teacher(train_n=500).key != s.teacher().key


def test_grid_sizes_and_labels():
    s = Study()
    configs, labels = grid(s, ["scratch", "kd"], [100, 200, 400], [0, 1])
    assert len(configs) == 12 and [lab["method"] for lab in labels].count("kd") == 6
    assert len({c.key for c in configs}) == 12


def test_cross_domain_grid_uses_attention_only_for_another_label_space():
    s = Study(seeds=(0,))
    configs, labels = cross_domain_grid(s, ["transfer", "kd", "at", "kd+at"])
    fundus = [(c, lab) for c, lab in zip(configs, labels) if lab["domain"].startswith("fundus")]
    assert sorted(lab["method"] for _, lab in fundus) == ["at", "transfer"]
    for c, lab in fundus:
        source = c.teacher if lab["method"] == "at" else c.init
        assert source.data.dataset == "synthetic-fundus"
    assert len(configs) == 1 + 4 + 4 + 4 + 2
    # real data: the other dataset has another label space, so it teaches by attention only
    real = Study(setting="chexpert")
    assert real.same_label_space("teacher") and not real.same_label_space("other-chest")


def test_regularization_runs_do_not_stop_early():
    s = Study(epochs=7, patience=2)
    configs, _ = regularization_grid(s, ["scratch", "kd"])
    assert all(c.train.patience == 7 for c in configs)


def test_real_settings_name_the_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="chexpert_root"):
        Study(setting="chexpert").target_data()
    assert Study(setting="chestxray8", nih_root=str(tmp_path)).missing_roots() == ["chexpert_root = None"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Study(setting="chexpert", chexpert_root=str(tmp_path / "nowhere")).target_data()
    with pytest.raises(ValueError, match="setting must be one of"):
        Study(setting="imagenet")


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
def test_claims_are_measured_from_cached_runs_only(tmp_path):
    s = Study(profile="tiny", results_dir=str(tmp_path), **TINY)
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


def test_every_chapter_declares_the_study_defaults():
    """The study's knobs are repeated in each chapter's parameters cell (papermill needs them there):
    their defaults must stay those of :class:`Study`, so a chapter run by hand agrees with the others."""
    import dataclasses

    from kdmed.profiles import Nullable, chapter_parameters
    from kdmed.utils import repo_root

    defaults = {f.name: f.default for f in dataclasses.fields(Study)}
    chapters = sorted((repo_root() / "book").glob("0*.py"))
    assert len(chapters) == 6
    for path in chapters:
        declared = chapter_parameters(path)
        study_knobs = {k: v for k, v in declared.items() if k in defaults}
        assert "setting" in study_knobs, f"{path.name} does not declare the study's parameters"
        for name, value in study_knobs.items():
            value = value.value if isinstance(value, Nullable) else value
            expected = defaults[name]
            expected = list(expected) if isinstance(expected, tuple) else expected
            assert value == expected, f"{path.name}: {name} = {value!r}, but Study says {expected!r}"
        missing = {"setting", "image_size", "seeds", "target_n", "epochs", "temperature", "alpha"} - set(study_knobs)
        assert not missing, f"{path.name} lacks {missing}"
