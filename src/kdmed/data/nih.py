"""NIH ChestX-ray14 (and its 8-finding ChestX-ray8 label set), read from the official files."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from kdmed.data import _io
from kdmed.data.subsets import split_by_patient
from kdmed.data.table import TableDataset

#: the 14 findings as spelled in ``Finding Labels`` (the ChestX-ray14 paper's order)
CHESTXRAY14 = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
#: the 8 findings of the original ChestX-ray8 release
CHESTXRAY8 = CHESTXRAY14[:8]
LABEL_SETS = {"chestxray14": CHESTXRAY14, "chestxray8": CHESTXRAY8}
NO_FINDING = "No Finding"
#: accepted table names, the newer release first (preferred when both are present)
TABLES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
LISTS = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
_SPLIT_FOLDER = re.compile(r"images_\d{3}")


class ImageIndex:
    """Where each PNG lives: ``images/`` and/or the tarballs' ``images_0NN/images/`` folders.

    The folders are scanned once (on first use); subsets of a dataset share one index.
    """

    def __init__(self, dataset: str, root: Path, progress: bool = False) -> None:
        self.dataset = dataset
        self.root = root
        self.progress = progress
        self._files: dict[str, str] | None = None
        self._lock = threading.Lock()

    def folders(self) -> list[Path]:
        """The image folders present under the root, in name order."""
        found = [self.root / "images"] if (self.root / "images").is_dir() else []
        with os.scandir(self.root) as it:
            split_dirs = sorted(e.name for e in it if e.is_dir() and _SPLIT_FOLDER.fullmatch(e.name))
        found += [self.root / d / "images" for d in split_dirs if (self.root / d / "images").is_dir()]
        return found

    @property
    def files(self) -> dict[str, str]:
        """File name -> full path over every image folder; a name in two folders is refused."""
        with self._lock:
            if self._files is None:
                from tqdm.auto import tqdm

                files: dict[str, str] = {}
                folders = self.folders()
                bar = tqdm(folders, desc=f"{self.dataset}: indexing images", unit="folder", disable=not self.progress)
                for folder in bar:
                    with os.scandir(folder) as it:
                        for e in it:
                            if e.name in files:
                                raise _io.DataError(
                                    f"{self.dataset}: image {e.name!r} is present twice: {files[e.name]} and {e.path}"
                                )
                            files[e.name] = e.path
                self._files = files
            return self._files

    def path(self, name: str) -> str:
        """Full path of image ``name``; raises naming the folders searched if it is absent."""
        found = self.files.get(name)
        if found is None:
            raise _io.MissingDataError(
                f"{self.dataset}: image {name} not found under {self.root}/images/ or {self.root}/images_0NN/images/"
            )
        return found


class NIHChestXray(TableDataset):
    """NIH ChestX-ray14: 112,120 frontal chest radiographs of 30,805 patients (multi-label, grey).

    ``root`` holds ``Data_Entry_2017.csv`` (2017 header, whose trailing comma adds an empty
    column that is dropped) or ``Data_Entry_2017_v2020.csv`` (preferred when both are
    present; its sex column may be ``Patient Gender`` or ``Patient Sex``, both kept as is),
    ``train_val_list.txt``, ``test_list.txt`` and the PNGs under ``images/`` or the official
    tarballs' ``images_001/images/`` ... ``images_012/images/`` (scanned once).

    Labels (``labels=``): ``"chestxray14"``, the 14 findings in the order Atelectasis,
    Cardiomegaly, Effusion, Infiltration, Mass, Nodule, Pneumonia, Pneumothorax,
    Consolidation, Edema, Emphysema, Fibrosis, Pleural_Thickening, Hernia (the file's
    spelling); or ``"chestxray8"``, the first eight (ChestX-ray8's findings), read from the
    same table, so images with only other findings are all-negative there.
    ``Finding Labels`` is ``|``-separated; ``No Finding`` means all zeros.

    Splits follow the official lists: ``"test"`` = ``test_list.txt``; ``"train"`` and
    ``"val"`` divide ``train_val_list.txt`` by patient (``val_fraction`` of its patients,
    shuffled with ``split_seed``, go to ``"val"``). Patient id: ``Patient ID``.
    ``missing`` / ``check_files`` work as for :class:`kdmed.data.chexpert.CheXpert`.
    """

    name = "nih"
    channels = 1
    identity_options = ("val_fraction", "split_seed")

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        image_size: int = 224,
        *,
        labels: str = "chestxray14",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        missing: str = "raise",
        check_files: bool = True,
        progress: bool = True,
    ) -> None:
        n = self.name
        self._check_split(split)
        _io.check_choice(n, "labels", labels, tuple(LABEL_SETS))
        val_fraction = _io.check_fraction(n, "val_fraction", val_fraction)
        self._check_missing(missing)
        expected = f"{' or '.join(TABLES)}, {LISTS['train_val']}, {LISTS['test']} and images/ (or images_0NN/images/)"
        self.root = _io.require_root(n, root, expected)

        self.csv_path = next((self.root / t for t in TABLES if (self.root / t).is_file()), None)
        if self.csv_path is None:
            raise _io.MissingDataError(f"{n}: {self.root} holds neither {TABLES[0]} nor {TABLES[1]}")
        df = _io.read_table(
            n,
            self.csv_path,
            ["Image Index", "Finding Labels", "Patient ID"],
            dtype={"Image Index": str, "Finding Labels": str},
        )
        # the 2017 header ends with a comma: pandas adds an empty "Unnamed: 11" column
        empty_extra = [c for c in df.columns if c.startswith("Unnamed:") and df[c].isna().all()]
        df = df.drop(columns=empty_extra)
        for col in ("Image Index", "Finding Labels"):
            _io.check_present(n, df, col, self.csv_path)
        _io.check_plain_names(n, df["Image Index"], self.csv_path, "Image Index")
        _io.check_unique(n, df["Image Index"], self.csv_path, "Image Index")
        pid = self._patient_ids(df)
        all_labels = self._parse_findings(df["Finding Labels"], LABEL_SETS[labels])

        rows = self._split_rows(df, pid, split, val_fraction, split_seed)
        names = df["Image Index"].to_numpy()[rows].astype(str)
        self.images = ImageIndex(n, self.root, progress)
        rows, names = self._keep_present(
            rows, names, split=split, missing=missing, check_files=check_files, progress=progress
        )
        self._open(
            files=names,
            options={"labels": labels, "val_fraction": val_fraction, "split_seed": int(split_seed)},
            missing=missing,
            check_files=check_files,
            classes=LABEL_SETS[labels],
            labels=all_labels[rows],
            patient_ids=pid[rows],
            table=df.iloc[rows],
            task="multilabel",
            image_size=image_size,
            split=split,
        )

    # ------------------------------------------------------------------ table parsing
    def _patient_ids(self, df: pd.DataFrame) -> np.ndarray:
        raw = df["Patient ID"]
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num) | (num != np.round(num))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _io.DataError(
                f"{self.name}: {self.csv_path}, {_io.row_ref(i)}, column 'Patient ID': value {raw.iloc[i]!r} "
                "is not an integer patient id"
            )
        return num.astype(np.int64)

    def _parse_findings(self, findings: pd.Series, classes: list[str]) -> np.ndarray:
        tokens = findings.str.strip().str.split("|").explode()
        tokens = tokens.str.strip()
        known = set(CHESTXRAY14) | {NO_FINDING}
        unknown = ~tokens.isin(known).to_numpy()
        if unknown.any():
            i = int(tokens.index[np.flatnonzero(unknown)[0]])
            raise _io.DataError(
                f"{self.name}: {self.csv_path}, {_io.row_ref(i)}, column 'Finding Labels': "
                f"{tokens[unknown].iloc[0]!r} is not a finding (expected {NO_FINDING!r} or '|'-separated "
                f"names from {CHESTXRAY14})"
            )
        per_row = tokens.groupby(level=0).size()
        mixed = tokens[(tokens == NO_FINDING).to_numpy()].index
        mixed = mixed[per_row.loc[mixed].to_numpy() > 1]
        if len(mixed):
            i = int(mixed[0])
            raise _io.DataError(
                f"{self.name}: {self.csv_path}, {_io.row_ref(i)}, column 'Finding Labels': "
                f"{findings.iloc[i]!r} combines {NO_FINDING!r} with findings"
            )
        out = np.zeros((len(findings), len(classes)), dtype=np.float32)
        col = {c: j for j, c in enumerate(classes)}
        hit = tokens.map(col)
        ok = hit.notna().to_numpy()
        out[tokens.index.to_numpy()[ok], hit.to_numpy()[ok].astype(np.int64)] = 1.0
        return out

    def _read_list(self, key: str, known: pd.Index) -> list[str]:
        path = self.root / LISTS[key]
        if not path.is_file():
            raise _io.MissingDataError(f"{self.name}: split list {path} does not exist (the official {LISTS[key]})")
        names = [ln.strip() for ln in path.read_text().splitlines()]
        lines = [k + 1 for k, nm in enumerate(names) if nm]
        names = [nm for nm in names if nm]
        unknown = [(ln, nm) for ln, nm in zip(lines, names) if nm not in known]
        if unknown:
            ln, nm = unknown[0]
            raise _io.DataError(
                f"{self.name}: {path}, line {ln}: image {nm!r} is not in {self.csv_path.name} "
                f"({len(unknown)} unknown names in that list)"
            )
        seen: set[str] = set()
        for ln, nm in zip(lines, names):
            if nm in seen:
                raise _io.DataError(f"{self.name}: {path}, line {ln}: image {nm!r} is listed twice")
            seen.add(nm)
        return names

    def _split_rows(self, df: pd.DataFrame, pid: np.ndarray, split: str, val_fraction: float, seed: int) -> np.ndarray:
        index = pd.Index(df["Image Index"])
        train_val = self._read_list("train_val", index)
        test = self._read_list("test", index)
        both = set(train_val) & set(test)
        if both:
            raise _io.DataError(
                f"{self.name}: image {sorted(both)[0]!r} is in both {LISTS['train_val']} and {LISTS['test']} "
                f"({len(both)} such images)"
            )
        # rows keep the table's order whatever the list's order
        if split == "test":
            rows = np.sort(index.get_indexer(test))
            _io.check_nonempty(self.name, len(rows), f"split 'test' ({LISTS['test']})")
            return rows
        rows = np.sort(index.get_indexer(train_val))
        _io.check_nonempty(self.name, len(rows), f"{LISTS['train_val']}")
        groups = split_by_patient(pid[rows], [1.0 - val_fraction, val_fraction], seed=seed)
        rows = rows[groups[0] if split == "train" else groups[1]]
        _io.check_nonempty(self.name, len(rows), f"split {split!r} with val_fraction={val_fraction}")
        return rows

    # ------------------------------------------------------------------ files: image names in the folder index
    def _absent(self, files: Sequence[str], progress: bool) -> np.ndarray:
        index = self.images.files
        return np.fromiter((nm not in index for nm in files), dtype=bool, count=len(files))

    def _shown(self, files: Sequence[str]) -> list[str]:
        return [f"images*/{nm}" for nm in files]

    def _image_path(self, source_row: int) -> str:
        return self.images.path(self._files[source_row])
