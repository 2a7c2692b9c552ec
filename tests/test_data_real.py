"""The loaders on the real CheXpert and NIH label tables (shipped with torchxrayvision), label-only.

Counts are checked against the published figures, and the label parsing against
torchxrayvision's own ``CheX_Dataset`` / ``NIH_Dataset`` (they read the tables without
touching images, so they can be built here with an empty image folder).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from kdmed.data import open_dataset
from kdmed.data.chexpert import CLASSES as CHEXPERT_CLASSES
from kdmed.data.nih import CHESTXRAY8, CHESTXRAY14
from kdmed.data.real_tables import real_table_path

LABEL_ONLY = dict(check_files=False, progress=False)
BOTH = ("frontal", "lateral")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Label-only roots linking the shipped (gzip) tables under their official names, opened once."""
    base = tmp_path_factory.mktemp("real")
    (base / "chexpert" / "CheXpert-v1.0-small").mkdir(parents=True)
    os.symlink(real_table_path("chexpert"), base / "chexpert" / "CheXpert-v1.0-small" / "train.csv")
    nih = base / "nih"
    nih.mkdir()
    os.symlink(real_table_path("nih"), nih / "Data_Entry_2017_v2020.csv")
    # the official lists are not shipped: split by patient id (as the official lists are)
    table = pd.read_csv(real_table_path("nih"))
    is_test = (table["Patient ID"] % 4 == 0).to_numpy()
    (nih / "test_list.txt").write_text("\n".join(table["Image Index"][is_test]) + "\n")
    (nih / "train_val_list.txt").write_text("\n".join(table["Image Index"][~is_test]) + "\n")
    cx = {
        "all": open_dataset("chexpert", base / "chexpert", "train", val_fraction=0.0, views=BOTH, uncertain="ignore", **LABEL_ONLY),
        "train": open_dataset("chexpert", base / "chexpert", "train", views=BOTH, **LABEL_ONLY),
        "val": open_dataset("chexpert", base / "chexpert", "val", views=BOTH, **LABEL_ONLY),
        "frontal": open_dataset("chexpert", base / "chexpert", "train", val_fraction=0.0, **LABEL_ONLY),
    }
    nx = {s: open_dataset("nih", nih, s, **LABEL_ONLY) for s in ("train", "val", "test")}
    return {"chexpert": cx, "nih": nx, "nih_table": table, "nih_root": nih}


def test_chexpert_real_counts(real):
    cx = real["chexpert"]
    assert len(cx["all"]) == 223_414 and cx["all"].describe()["patients"] == 64_540
    assert len(cx["train"]) + len(cx["val"]) == 223_414
    assert set(cx["train"].patient_ids).isdisjoint(cx["val"].patient_ids)
    assert len(set(cx["train"].patient_ids) | set(cx["val"].patient_ids)) == 64_540
    assert len(set(cx["val"].patient_ids)) == round(0.05 * 64_540)
    assert len(cx["frontal"]) == 191_027 and (cx["frontal"].table["Frontal/Lateral"] == "Frontal").all()


def test_chexpert_labels_agree_with_torchxrayvision(real):
    import torchxrayvision as xrv

    ours = real["chexpert"]["all"]  # uncertain="ignore": -1 -> NaN, blank -> 0
    ref = xrv.datasets.CheX_Dataset(imgpath=str(real_table_path("chexpert").parent), views=["*"], unique_patients=False)
    assert ours.table["Path"].tolist() == ref.csv["Path"].tolist()
    # xrv: -1 and blank -> NaN, other observations forced to 0 when "No Finding" = 1; "Effusion" renamed
    names = [{"Effusion": "Pleural Effusion"}.get(str(p), str(p)) for p in ref.pathologies]
    mine = ours.labels[:, [CHEXPERT_CLASSES.index(p) for p in names]]
    known = ~np.isnan(ref.labels)
    np.testing.assert_array_equal(mine[known], ref.labels[known])
    assert np.isin(mine[~known & ~np.isnan(mine)], [0.0]).all()  # xrv's NaN that are ours: blanks -> 0
    raw = ours.table[names].to_numpy(dtype=float)
    np.testing.assert_array_equal(np.isnan(mine), raw == -1)
    # under the default U-Zeros policy, positives are exactly xrv's positives
    zeros = np.concatenate([real["chexpert"]["train"].labels, real["chexpert"]["val"].labels])
    paths = pd.concat([real["chexpert"]["train"].table["Path"], real["chexpert"]["val"].table["Path"]])
    order = pd.Index(paths).get_indexer(ref.csv["Path"])
    np.testing.assert_array_equal(zeros[order][:, [CHEXPERT_CLASSES.index(p) for p in names]] == 1, ref.labels == 1)


def test_nih_real_counts_and_labels_agree_with_torchxrayvision(real):
    import torchxrayvision as xrv

    nx, table = real["nih"], real["nih_table"]
    assert sum(len(d) for d in nx.values()) == 112_120
    assert len(set().union(*(set(d.patient_ids) for d in nx.values()))) == 30_805
    # "No Finding" rows, and only they, have all 14 labels negative
    assert sum(int((d.table["Finding Labels"] == "No Finding").sum()) for d in nx.values()) == 60_361
    assert sum(int((d.labels.sum(1) == 0).sum()) for d in nx.values()) == 60_361
    assert set(nx["test"].patient_ids % 4) == {0} and not ({0} & set(nx["train"].patient_ids % 4))
    ref = xrv.datasets.NIH_Dataset(imgpath=str(real["nih_root"]), views=["*"], unique_patients=False)
    ours = np.concatenate([d.labels for d in nx.values()])
    names = pd.concat([d.table["Image Index"] for d in nx.values()])
    order = pd.Index(names).get_indexer(ref.csv["Image Index"])
    assert (order >= 0).all() and len(order) == 112_120
    mine = ours[order][:, [CHESTXRAY14.index(p) for p in ref.pathologies]]
    np.testing.assert_array_equal(mine, ref.labels)
    # ChestX-ray8 label set: the first eight columns
    eight = open_dataset("nih", real["nih_root"], "test", labels="chestxray8", **LABEL_ONLY)
    np.testing.assert_array_equal(eight.labels, nx["test"].labels[:, : len(CHESTXRAY8)])
    assert len(table) == 112_120
