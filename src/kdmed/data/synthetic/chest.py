"""The synthetic chest X-ray dataset: three institutions, real CheXpert label vectors, per-patient anatomy.

:class:`SyntheticChest` draws each image's metadata (patient, label vector from the
real CheXpert frontal rows, finding strengths, anatomy) and renders it with
:func:`~kdmed.data.synthetic.chest_render.render_chest`. :data:`INSTITUTIONS` are the
three synthetic hospitals that play the paper's sources (see :mod:`kdmed.data.synthetic`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdmed.data.chexpert import CLASSES
from kdmed.data.synthetic.base import P_TEXTURE, SyntheticDataset, carry_forward, draw_patients, image_uniforms
from kdmed.data.synthetic.chest_render import ANATOMY, ANATOMY_RANGES, CHEST_UNIFORMS, FINDINGS, render_chest

#: the 14 CheXpert observations, in the order of the official CSV
CHEXPERT_CLASSES: tuple[str, ...] = tuple(CLASSES)


# ---------------------------------------------------------------------------- institutions
@dataclass(frozen=True)
class ChestInstitution:
    """One synthetic hospital: which real dataset it plays, its label mix and acquisition style."""

    code: str
    plays: str
    #: positive rows of these classes are drawn this many times more often
    label_weights: dict[str, float] = field(default_factory=dict)
    zoom: float = 1.0  # > 1 frames the chest tighter
    shift_y: float = 0.0  # vertical framing offset (half-widths)
    rotation: float = 0.05  # patient rotation range (radians, +-)
    body_scale: float = 1.0  # habitus of the population
    noise: float = 7.0  # white noise sigma, in grey levels
    blur: float = 0.012  # Gaussian blur sigma, in half-widths
    darkness: float = 1.0  # > 1 darkens the grey-level curve (like gamma > 1)
    contrast: float = 0.3  # weight of an S-curve in the grey-level curve
    black: float = 0.02  # grey level of the darkest pixel (fraction of 255)
    white: float = 0.96  # grey level of the brightest pixel


INSTITUTIONS: dict[str, ChestInstitution] = {
    "A": ChestInstitution(
        "A",
        "NIH ChestX-ray14 (large source for transfer-learning pre-training)",
        {"No Finding": 6.0, "Support Devices": 0.6},
        zoom=0.88,
        shift_y=0.05,
        body_scale=0.97,
        noise=10.0,
        blur=0.02,
        darkness=1.35,
        contrast=0.1,
        black=0.04,
        white=0.90,
    ),
    "B": ChestInstitution(
        "B",
        "MIMIC-CXR (large source of the teacher)",
        {"Support Devices": 2.0, "Pleural Effusion": 1.8},
        zoom=1.16,
        shift_y=-0.05,
        rotation=0.1,
        body_scale=1.03,
        noise=4.0,
        blur=0.006,
        darkness=0.6,
        contrast=0.65,
        black=0.0,
        white=1.0,
    ),
    "C": ChestInstitution("C", "CheXpert (small target)"),
}


# ---------------------------------------------------------------------------- real labels
@functools.lru_cache(maxsize=1)
def chexpert_frontal_labels() -> tuple[np.ndarray, pd.DataFrame]:
    """The real CheXpert frontal label rows: raw values ``[R, 14]`` (1/0/-1/NaN) and Sex/Age/row.

    Cached: parsing the shipped CSV takes about a second.
    """
    from kdmed.data.real_tables import real_table

    table = real_table("chexpert")
    missing = [c for c in (*CHEXPERT_CLASSES, "Frontal/Lateral") if c not in table.columns]
    if missing:
        raise ValueError(f"the shipped CheXpert table lacks column(s) {missing}")
    frontal = table[table["Frontal/Lateral"] == "Frontal"]
    raw = frontal[list(CHEXPERT_CLASSES)].to_numpy(dtype=np.float32)
    raw.setflags(write=False)
    info = pd.DataFrame(
        {"chexpert_row": frontal.index.to_numpy(), "sex": frontal["Sex"].to_numpy(), "age": frontal["Age"].to_numpy()}
    )
    return raw, info


@functools.lru_cache(maxsize=None)
def _label_cdf(institution: str) -> np.ndarray:
    raw, _ = chexpert_frontal_labels()
    w = np.ones(len(raw))
    for cls, factor in INSTITUTIONS[institution].label_weights.items():
        w[raw[:, CHEXPERT_CLASSES.index(cls)] == 1] *= factor
    cdf = np.cumsum(w)
    cdf.setflags(write=False)
    return cdf



class SyntheticChest(SyntheticDataset):
    """Synthetic frontal chest X-rays with real CheXpert label vectors (see the module docstring).

    ``institution`` "A" (plays NIH), "B" (plays MIMIC-CXR, the teacher source) or
    "C" (plays CheXpert, the target); ``n`` images in the split (default
    train 20000, val 2000, test 2000); ``seed`` picks the whole synthetic world.
    Labels follow U-Zeros (uncertain and blank are 0). Each positive finding gets a
    random strength in [0.15, 1] (``strength_<class>``, times the finding's
    :data:`VISIBILITY` when drawn); uncertain findings are drawn faintly (0.10-0.35)
    in half of the images (strength > 0 with label 0), which makes them realistic
    label noise. ``image_array()`` renders in vectorised batches (no disk cache unless
    a ``cache_dir`` is given).
    """

    name = "synthetic-chest"
    channels = 1
    _dataset_code = 1

    def __init__(self, root=None, split="train", image_size=64, *, institution="C", n=None, seed=0):
        n = self._start(split, image_size, n, seed)
        if institution not in INSTITUTIONS:
            raise ValueError(f"{self.name}: unknown institution {institution!r}; expected one of {sorted(INSTITUTIONS)}")
        self.institution = institution
        self.style = INSTITUTIONS[institution]
        self._institution_code = ord(institution)
        stream = self._stream

        patient, rank, anat_u, _ = draw_patients(stream, n, (0.55, 0.25, 0.20), len(ANATOMY))
        u = image_uniforms(stream, n, 2 + 2 * len(FINDINGS))
        raw_all, info = chexpert_frontal_labels()
        cdf = _label_cdf(institution)
        fresh = np.minimum(np.searchsorted(cdf, u[:, 0] * cdf[-1], side="right"), len(cdf) - 1)
        # a follow-up image repeats the previous study's findings half of the time
        real_row = fresh[carry_forward((rank > 0) & (u[:, 1] < 0.5))]
        raw = raw_all[real_row]
        labels = (raw == 1).astype(np.float32)

        nf = len(FINDINGS)
        u_strength, u_unc = u[:, 2 : 2 + nf], u[:, 2 + nf :]
        raw_f = raw[:, 1:]
        strength = np.where(raw_f == 1, 0.15 + 0.85 * u_strength, 0.0)
        faint = (raw_f == -1) & (u_unc < 0.5)
        strength = np.where(faint, 0.10 + 0.25 * u_strength, strength)
        self._strength = strength.astype(np.float32)

        lo = np.array([ANATOMY_RANGES[a][0] for a in ANATOMY])
        hi = np.array([ANATOMY_RANGES[a][1] for a in ANATOMY])
        anatomy = lo + (hi - lo) * anat_u
        self._anatomy = anatomy[patient].astype(np.float32) if n else np.zeros((0, len(ANATOMY)), np.float32)
        self._patient = patient

        pid = np.array([f"{institution}-{split}-{p:06d}" for p in patient], dtype=object)
        first_row = real_row[np.searchsorted(patient, patient)] if n else real_row
        table = {
            "image_id": [f"{institution}-{split}-{i:07d}" for i in range(n)],
            "patient_id": pid,
            "institution": institution,
            "split": split,
            "image_index": np.arange(n),
            "study": rank + 1,
            "chexpert_row": info["chexpert_row"].to_numpy()[real_row],
            "sex": info["sex"].to_numpy()[first_row],
            "age": info["age"].to_numpy()[first_row],
        }
        for j, cls in enumerate(CHEXPERT_CLASSES):
            table[cls] = raw[:, j]
        for j, cls in enumerate(FINDINGS):
            table[f"strength_{cls}"] = self._strength[:, j]
        for j, a in enumerate(ANATOMY):
            table[a] = self._anatomy[:, j]
        super().__init__(
            classes=CHEXPERT_CLASSES,
            labels=labels,
            patient_ids=pid,
            table=pd.DataFrame(table),
            task="multilabel",
            image_size=image_size,
            split=split,
        )

    def _world(self) -> dict[str, Any]:
        return {"institution": self.institution}

    def _about(self) -> dict[str, Any]:
        return {"institution": self.institution, "plays": self.style.plays, "seed": self.seed}

    # .................................................................. rendering
    def _render(self, rows: np.ndarray) -> np.ndarray:
        return render_chest(
            anatomy=self._anatomy[rows],
            strength=self._strength[rows],
            style=self.style,
            image_size=self.image_size,
            uniforms_and_noise=self._render_uniforms(rows, CHEST_UNIFORMS),
            texture=self._texture(self._patient[rows]),
        )

    def _texture(self, patients: np.ndarray) -> np.ndarray:
        """Per-patient coarse noise ``[B, 2, G, G]``: lung markings and patchiness follow the patient."""
        return self._draws(P_TEXTURE, patients, 0, (2, 12, 12))[1]

