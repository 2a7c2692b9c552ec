"""The `medmnist` profile: MedMNIST roles, runs on `.npz` fixtures, the offline errors."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_data import make_medmnist_root
from kdmed import experiments
from kdmed.data import open_dataset
from kdmed.data._io import MissingDataError
from kdmed.data.nih import CHESTXRAY14
from kdmed.runner import evaluate_on
from kdmed.study import Study, StudyError

pytestmark = pytest.mark.filterwarnings("ignore:AU.*undefined:RuntimeWarning")

TINY = dict(image_size=32, target_n=12, target_sizes=[12], teacher_pool_n=24, teacher_pool_sizes=[24], init_pool_n=24,
            val_n=None, test_n=None, train_eval_n=8, epochs=1, patience=1, teacher_epochs=1, teacher_patience=1,
            seeds=[0], curve_seeds=[0], sweep_seeds=[0], teacher_seeds=[0], grid_seeds=[0], n_boot=10)


@pytest.fixture(scope="module")
def medmnist_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("medmnist")
    for k, flag in enumerate(("chestmnist", "pneumoniamnist", "retinamnist")):
        root = make_medmnist_root(base, flag=flag, sizes=(64,), n=(80, 20, 30), seed=k)
    return root


def test_the_medmnist_roles_are_chestmnist_pneumoniamnist_and_retinamnist(medmnist_root):
    study = Study.from_profile("medmnist", {"medmnist_root": str(medmnist_root)})
    assert study.real_data and study.missing_roots() == []
    assert (study.target_data().dataset, study.init("near").data.dataset, study.init("far").data.dataset) == \
        ("medmnist-chest", "medmnist-pneumonia", "medmnist-retina")
    assert study.teacher().data.part == "pool" and study.target_data().part == "target"
    assert not study.has_role("other-chest")
    with pytest.raises(StudyError, match="no dataset for the role 'other-chest'.*it is not run"):
        study.init("other-chest")
    roles = experiments.domain_roles(study)
    assert list(roles) == ["near", "far"] and roles["near"].startswith("PneumoniaMNIST")
    assert {lab["role"] for lab in experiments.cross_domain(study).labels} == {"near", "far"}
    assert list(study.data_roles()) == ["target (ChestMNIST (NIH ChestX-ray14))",
                                        "teacher pool (ChestMNIST (NIH ChestX-ray14))", "near init (PneumoniaMNIST)",
                                        "far init (RetinaMNIST (DeepDRiD fundus))"]
    pneumonia = open_dataset("medmnist-pneumonia", root=medmnist_root, split="train", image_size=32)
    assert pneumonia.classes == ["Pneumonia"] and pneumonia.task == "binary" and pneumonia.labels.shape == (80, 1)


def test_medmnist_students_run_on_npz_fixtures_and_a_pneumonia_network_teaches_its_one_shared_finding(
        medmnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("KDMED_RESULTS_DIR", str(tmp_path / "results"))
    study = Study.from_profile("medmnist", {"medmnist_root": str(medmnist_root), **TINY})
    grid = experiments.cross_domain(study).select(role="near")
    table = study.run(grid.configs + [study.student("transfer+kd@near")], progress=False)
    assert len(table) == 4 and table["macro_auc"].notna().all()
    store = study.store()
    kd = store.load_result(grid.select(method="kd").configs[0])
    assert kd["classes"] == CHESTXRAY14
    assert kd["strategy"]["kd_classes"] == "1 shared of 14 classes: Pneumonia; not predicted: " + ", ".join(
        c for c in CHESTXRAY14 if c != "Pneumonia")
    scored = evaluate_on(study.init("near"), store, study.target_data())
    assert scored["classes"] == ["Pneumonia"] and scored["y_score"].shape == (len(scored["y_true"]), 1)
    assert np.isfinite(scored["y_score"]).all()


def test_a_missing_medmnist_file_is_named_with_how_to_get_it(tmp_path):
    root = make_medmnist_root(tmp_path, flag="chestmnist", sizes=(28,))
    study = Study.from_profile("medmnist", {"medmnist_root": str(root), **TINY})
    with pytest.raises(MissingDataError, match=r"pneumoniamnist\.npz.*missing.*pip install medmnist"):
        open_dataset(**{"name": "medmnist-pneumonia", "root": root, "image_size": 28})
    missing = Study.from_profile("medmnist", {"medmnist_root": str(tmp_path / "nowhere")})
    assert missing.missing_roots() == [f"medmnist_root = {str(tmp_path / 'nowhere')!r}"]
    assert study.missing_roots() == []
