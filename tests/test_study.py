"""The study's design: arms, teachers, inits, the pool rule, the grids, and one source per setting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from kdmed import analysis, experiments
from kdmed.config import RunConfig
from kdmed.methods import METHODS
from kdmed.study import ARMS, CONTRASTS, Study, StudyError, arm_method


def _study(**changes) -> Study:
    return dataclasses.replace(Study.from_profile("default"), **changes)


def test_arms_wire_strategy_init_teacher_and_freezing():
    s = _study()
    for arm in ARMS:
        name, init = arm_method(arm)
        m = METHODS[name]
        cfg = s.student(arm, 100, seed=3)
        assert cfg.strategy == m.strategy and (cfg.teacher is not None) == m.taught
        assert isinstance(cfg.init, RunConfig) == m.pretrained and (cfg.freeze_through is not None) == m.frozen
        assert cfg.data.train_n == 100 and cfg.data.subset_seed == 3 and cfg.data.part == "target"
        assert cfg.taps == (s.at_taps if m.uses_at else None)
        if init:
            expected = {"near": "synthetic-chest", "far": "synthetic-fundus"}[init]
            assert cfg.init.data.dataset == expected and cfg.init.arch == s.student_arch
    assert s.student("transfer-frozen@near", 100, 0).freeze_through == "block3"
    with pytest.raises(ValueError, match="'kd' starts from random weights: it takes no init"):
        arm_method("kd@near")
    with pytest.raises(ValueError, match="needs an init"):
        arm_method("transfer")


def test_teachers_are_as_strong_as_the_student_and_alternate_with_the_seed():
    s = _study()
    assert s.teacher_arch == s.student_arch or s.teacher_arch in ("densenet121", "resnet18")
    t0, t1 = s.teacher_for(0), s.teacher_for(1)
    assert t0.seed != t1.seed and s.teacher_for(2).key == t0.key
    assert t0.data.part == "pool" and t0.data.train_n == s.teacher_pool_n
    assert s.teacher_pool_n / s.target_n >= 20  # the paper's ratio
    # a sweep teacher of another strength is one network for every student seed
    weak = min(s.teacher_pool_sizes)
    assert s.teacher_for(0, weak).key == s.teacher_for(1, weak).key
    # the headline teacher of the distillation chapter is the teacher chapter's run
    assert s.student("kd", seed=1).teacher.key == s.teacher(s.teacher_pool_n, s.paired_seed(1)).key


def test_no_run_of_the_published_profile_is_designed_to_stop_at_its_cap():
    s = _study()
    for cfg in experiments.everything(s).configs:
        assert cfg.train.patience < cfg.train.epochs


def test_the_target_never_shares_a_patient_with_its_teachers_pool_for_any_seed():
    s = Study.from_profile("smoke")
    table = analysis.patient_overlap(s)
    assert len(table) == len(s.target_sizes) * len(set(s.seeds) | set(s.curve_seeds))
    assert (table["shared patients"] == 0).all() and (table["target patients"] > 0).all()
    other = analysis.patient_overlap(s, rule="overlapping")
    assert other["shared patients"].sum() > 0  # the other rule does overlap: the check can fail


def test_grids_reuse_the_headline_runs():
    s = _study()
    head = {c.key for c in experiments.headline(s).configs}
    assert len(head) == len(ARMS) * len(s.seeds)
    curve = experiments.learning_curve(s)
    at_headline = {c.key for c, lab in curve if lab["n"] == s.target_n}
    assert at_headline <= head
    sweep = experiments.strength_sweep(s)
    strong = {c.key for c, lab in sweep if lab["pool"] == s.teacher_pool_n}
    assert strong <= head
    assert set(experiments.cross_domain(s).frame()["role"]) == {"other-chest", "near", "far"}
    far = experiments.cross_domain(s).select(role="far")
    assert set(lab["method"] for lab in far.labels) == {"transfer", "at"}  # another label space: no kd
    cells = experiments.temperature_alpha(s).frame()
    assert len(cells) == len(s.temperatures) * len(s.alphas) * len(s.grid_seeds)


def test_contrasts_name_arms_of_the_headline():
    for framing, init, a, b in CONTRASTS.values():
        assert a in ARMS and b in ARMS and init in ("near", "far")


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
    defaulted = {f.name for f in dataclasses.fields(Study) if f.default is not dataclasses.MISSING}
    assert defaulted == {"chexpert_root", "nih_root", "dr_root", "medmnist_root"}


def test_overrides_are_checked_and_papermill_strings_read_as_yaml():
    s = Study.from_profile("smoke", {"seeds": "[0, 1, 2]", "temperature": 2, "val_n": None})
    assert s.seeds == (0, 1, 2) and s.temperature == 2.0 and isinstance(s.temperature, float) and s.val_n is None
    with pytest.raises(StudyError, match=r"seeds expects a list, got int 3"):
        Study.from_profile("smoke", {"seeds": 3})
    with pytest.raises(StudyError, match=r"epochs expects an int, got str 'many'"):
        Study.from_profile("smoke", {"epochs": "many"})
    with pytest.raises(StudyError, match=r"override\(s\) \['temprature'\] are not study parameters"):
        Study.from_profile("smoke", {"temprature": 2.0})
    with pytest.raises(StudyError, match="missing study parameter"):
        Study.from_mapping({"profile": "x", "setting": "synthetic"})
    with pytest.raises(StudyError, match="must include the headline teacher_pool_n"):
        Study.from_profile("smoke", {"teacher_pool_n": 999})


def test_a_chapter_namespace_takes_the_injected_study_fields():
    s = Study.from_namespace({"profile": "smoke", "temperature": 8.0, "plt": object(), "seeds": "[5]"})
    assert s.temperature == 8.0 and s.seeds == (5,) and s.profile == "smoke"


def test_real_settings_name_the_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="chexpert_root"):
        _study(setting="chexpert").target_data()
    assert _study(setting="chestxray8", nih_root=str(tmp_path)).missing_roots() == ["chexpert_root = None",
                                                                                   "dr_root = None"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _study(setting="chexpert", chexpert_root=str(tmp_path / "nowhere")).target_data()


@pytest.mark.slow
def test_claims_are_measured_from_stored_runs_only(tmp_path, monkeypatch):
    from kdmed.claims import measure

    monkeypatch.setenv("KDMED_RESULTS_DIR", str(tmp_path))
    s = dataclasses.replace(Study.from_profile("smoke"), profile="tiny", n_boot=30)
    before = measure(s)
    assert before.tests.empty and (before.claims.iloc[:, 3] == "not run under this profile").all()
    s.run(experiments.headline(s).configs, progress=False)
    after = measure(s)
    gain = after.tests[after.tests["claim"] == "gain"].set_index("test")
    store = s.store()
    from sklearn.metrics import roc_auc_score

    from kdmed.inference import fixed_classes

    y_true = store.load_scores(s.student("kd"))["y_true"]
    kept, excluded = fixed_classes(y_true)
    assert excluded  # 100 test images: some rare findings have fewer than 5 positives, left out of every AUC

    def fixed_macro(arm, seed):  # sklearn over the fixed class set, NaN labels masked
        score = store.load_scores(s.student(arm, seed=seed))["y_score"]
        return np.mean([roc_auc_score(y_true[~np.isnan(y_true[:, c]), c], score[~np.isnan(y_true[:, c]), c])
                        for c in kept])

    diff = [fixed_macro("kd", seed) - fixed_macro("transfer@near", seed) for seed in s.seeds]
    assert gain.loc["kd − transfer (near)", "estimate"] == pytest.approx(100 * np.mean(diff), abs=1e-6)
    # (a tiny smoke run can leave a per-seed difference without variance: no p-value, "not measured")
    assert set(after.tests["verdict"]) <= {"holds on the stand-in", "opposite on the stand-in",
                                           "unresolved on the stand-in", "not measured"}
    assert set(gain["verdict"]) <= {"holds on the stand-in", "opposite on the stand-in", "unresolved on the stand-in"}
    row = after.claims.set_index("key").loc["cross_domain"]
    assert row.iloc[2] == "not run under this profile"
    assert after.claims.set_index("key").loc["gain", "the paper's real data"].startswith("not tested here")
    assert isinstance(pd.DataFrame(after.tests), pd.DataFrame)


def test_the_full_profile_takes_its_far_init_from_imagenet_weights_in_torch_home(tmp_path, monkeypatch):
    """far_init: imagenet -> the far arms start from torchvision's weights read from $TORCH_HOME, never downloaded."""
    import torch
    from torchvision.models import resnet18

    from kdmed.config import RunConfig
    from kdmed.runner import run_one
    from kdmed.store import ResultStore

    roots = {k: str(tmp_path) for k in ("chexpert_root", "nih_root", "dr_root")}
    full = Study.from_profile("full", roots)
    assert full.far_init == "imagenet" and full.init("far") == "imagenet"
    assert full.student("transfer@far").init == "imagenet" and full.student("transfer+kd@far").init == "imagenet"
    assert isinstance(full.init("near"), RunConfig)
    roles = {lab["role"] for lab in experiments.teachers(full).labels}
    assert "near init" in roles and "far init" not in roles  # ImageNet weights: nothing to train
    far_rows = experiments.cross_domain(full).select(role="far", method="transfer").configs
    assert far_rows and all(isinstance(c.init, RunConfig) and c.init.data.dataset == "aptos" for c in far_rows)
    assert "the far init is torchvision's ImageNet weights" in full.describe()["inits"]
    with pytest.raises(StudyError, match="far_init must be one of"):
        Study.from_profile("smoke", {"far_init": "imagenet21k"})

    # a resnet18 student from a (fake) torchvision ImageNet file in a temporary TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    smoke = Study.from_profile("smoke", {"student_arch": "resnet18", "teacher_arch": "resnet18", "far_init": "imagenet",
                                         "epochs": 1, "at_taps": ["layer2", "layer3"]})
    cfg = smoke.student("transfer@far")
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*never downloads"):
        run_one(cfg, ResultStore(tmp_path / "results"), quiet=True)
    torch.manual_seed(3)
    reference = resnet18()
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    result = run_one(cfg, ResultStore(tmp_path / "results"), quiet=True)
    assert result["epochs_run"] == 1 and result["dependencies"] == {}


def test_on_real_data_each_role_is_its_own_dataset_and_a_role_without_one_is_not_run(tmp_path):
    roots = {k: str(tmp_path) for k in ("chexpert_root", "nih_root", "dr_root")}
    for setting, target, near in (("chexpert", "chexpert", "nih"), ("chestxray8", "nih", "chexpert")):
        s = Study.from_profile("smoke", {"setting": setting, **roots})
        assert (s.target_data().dataset, s.init("near").data.dataset, s.init("far").data.dataset) == \
            (target, near, "aptos")
        assert not s.has_role("other-chest") and s.role_dataset("other-chest") == "not run"
        grid = experiments.cross_domain(s)
        assert {lab["role"] for lab in grid.labels} == {"near", "far"}
        keys = [c.name for c in grid.configs]
        assert len(keys) == len(set(keys))  # no run is counted twice
        # a chest network of another label space distils (over the shared findings); the fundus one only by AT
        assert {lab["method"] for lab in grid.select(role="near").labels} == {"transfer", "kd", "at"}
        assert {lab["method"] for lab in grid.select(role="far").labels} == {"transfer", "at"}
        assert list(s.data_roles())[2:] == [f"near init ({s.role_dataset('near')})", "far init (aptos fundus)"]
    synthetic = Study.from_profile("smoke")
    assert {lab["role"] for lab in experiments.cross_domain(synthetic).labels} == {"other-chest", "near", "far"}
