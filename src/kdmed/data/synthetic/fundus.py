"""The synthetic fundus dataset: diabetic retinopathy grades 0-4 in the EyePACS mix, lesions growing with the grade.

:class:`SyntheticFundus` draws each image's metadata (patient and eye, grade,
lesion and confounder counts, lesion contrast) and renders it with
:func:`~kdmed.data.synthetic.fundus_render.render_fundus`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kdmed.data.grades import DR_TASKS, GRADE_CLASSES, grade_labels
from kdmed.data.synthetic.base import P_TEXTURE, SyntheticDataset, carry_forward, draw_patients, image_uniforms
from kdmed.data.synthetic.fundus_render import FUNDUS_UNIFORMS, N_CWS, N_DRUSEN, N_DUST, N_EX, render_fundus

FUNDUS_CLASSES: tuple[str, ...] = tuple(GRADE_CLASSES)
#: EyePACS 2015 training-set grade mix (35,126 images), rounded
FUNDUS_GRADE_MIX: tuple[float, ...] = (0.73, 0.07, 0.15, 0.025, 0.025)
#: per grade: (microaneurysms lo, hi), (haemorrhages lo, hi), P(exudates), P(cotton-wool), beading, new vessels
_GRADE_LESIONS = {
    0: ((0, 0), (0, 0), 0.0, 0.0, False, False),
    1: ((2, 6), (0, 0), 0.0, 0.0, False, False),
    2: ((4, 12), (1, 4), 0.6, 0.3, False, False),
    3: ((8, 20), (5, 12), 0.7, 0.6, True, False),
    4: ((6, 16), (3, 8), 0.7, 0.5, True, True),
}



class SyntheticFundus(SyntheticDataset):
    """Synthetic colour fundus photographs with diabetic retinopathy grades 0-4 (EyePACS mix).

    ``task="grade"``: 5 classes "grade 0".."grade 4", one-hot (multiclass);
    ``task="referable"``: one class "referable DR" (grade >= 2, binary).
    Lesions grow with the grade: micro-aneurysms (>= 1), haemorrhages, hard
    exudates and cotton-wool spots (>= 2), venous beading (>= 3),
    neovascularisation (4). Patients have one or two eyes with correlated grades.
    What makes it a small-data problem: each photograph shows its lesions with its
    own clarity (``lesion_contrast``), exposure, blur and noise vary widely, and
    confounders appear at every grade (drusen look like exudates, dust on the
    lens like haemorrhages). A tiny CNN at 64 px reaches a referable-DR AUC of
    about 0.66 with 300 training images and 0.83 with 3,000.
    """

    name = "synthetic-fundus"
    channels = 3
    _dataset_code = 2

    def __init__(self, root=None, split="train", image_size=64, *, task="grade", n=None, seed=0):
        n = self._start(split, image_size, n, seed)
        if task not in DR_TASKS:
            raise ValueError(f"{self.name}: task must be 'grade' or 'referable', got {task!r}")
        self.task_name = task
        stream = self._stream
        patient, rank, _, n_eyes = draw_patients(stream, n, (0.15, 0.85), 1)
        u = image_uniforms(stream, n, 13)
        cut = np.cumsum(FUNDUS_GRADE_MIX)[:-1]
        fresh = np.searchsorted(cut, u[:, 0], side="right")
        # the second eye has the first eye's grade 70% of the time (marginal mix unchanged)
        grade = fresh[carry_forward((rank > 0) & (u[:, 1] < 0.7))].astype(np.int64)
        lesions = np.array([_GRADE_LESIONS[g] for g in range(5)], dtype=object)
        ma_lo = np.array([lesions[g][0][0] for g in range(5)])[grade]
        ma_hi = np.array([lesions[g][0][1] for g in range(5)])[grade]
        he_lo = np.array([lesions[g][1][0] for g in range(5)])[grade]
        he_hi = np.array([lesions[g][1][1] for g in range(5)])[grade]
        p_ex = np.array([lesions[g][2] for g in range(5)])[grade]
        p_cw = np.array([lesions[g][3] for g in range(5)])[grade]
        n_ma = ma_lo + np.floor(u[:, 2] * (ma_hi - ma_lo + 1)).astype(np.int64)
        n_he = he_lo + np.floor(u[:, 3] * (he_hi - he_lo + 1)).astype(np.int64)
        n_ex = np.where(u[:, 4] < p_ex, 3 + np.floor(u[:, 5] * (N_EX - 2)).astype(np.int64), 0)
        n_cw = np.where(u[:, 6] < p_cw, 1 + np.floor(u[:, 7] * N_CWS).astype(np.int64), 0)
        # confounders at every grade: drusen look like exudates, dust on the lens like haemorrhages
        n_dr = np.where(u[:, 10] < 0.3, 3 + np.floor(u[:, 11] * (N_DRUSEN - 2)).astype(np.int64), 0)
        n_dust = np.where(u[:, 12] < 0.4, 1 + np.floor(u[:, 12] / 0.4 * N_DUST).astype(np.int64), 0)
        self._grade = grade
        self._counts = np.stack([n_ma, n_he, n_ex, n_cw, n_dr, n_dust], axis=1) if n else np.zeros((0, 6), np.int64)
        # how clearly this photograph shows its lesions (focus, media opacity)
        self._contrast = (0.35 + 0.65 * u[:, 9]).astype(np.float32)
        self._patient = patient
        # two eyes: left then right; a single eye is left or right at random
        eye = np.where((rank == 0) & ((n_eyes == 2) | (u[:, 8] < 0.5)), "left", "right")
        self._right = (eye == "right").astype(np.float32)

        pid = np.array([f"F-{split}-{p:06d}" for p in patient], dtype=object)
        table = pd.DataFrame(
            {
                "image_id": [f"F-{split}-{i:07d}" for i in range(n)],
                "patient_id": pid,
                "split": split,
                "image_index": np.arange(n),
                "eye": eye,
                "grade": grade,
                "referable": grade >= 2,
                "microaneurysms": self._counts[:, 0],
                "haemorrhages": self._counts[:, 1],
                "hard_exudates": self._counts[:, 2],
                "cotton_wool_spots": self._counts[:, 3],
                "drusen": self._counts[:, 4],
                "dust_artifacts": self._counts[:, 5],
                "lesion_contrast": self._contrast,
                "venous_beading": grade >= 3,
                "neovascularisation": grade >= 4,
            }
        )
        labels, classes, kind = grade_labels(grade, task)
        super().__init__(
            classes=classes, labels=labels, patient_ids=pid, table=table, task=kind, image_size=image_size, split=split
        )

    # the pixels do not depend on the task, so both tasks share cache entries (no _world)
    def _about(self) -> dict[str, Any]:
        return {"seed": self.seed, "label": self.task_name}

    def _render(self, rows: np.ndarray) -> np.ndarray:
        anat, tex = self._draws(P_TEXTURE, self._patient[rows], 24, (1, 10, 10))
        return render_fundus(
            grade=self._grade[rows],
            counts=self._counts[rows],
            contrast=self._contrast[rows],
            right=self._right[rows],
            anatomy=anat,
            texture=tex,
            image_size=self.image_size,
            uniforms_and_noise=self._render_uniforms(rows, FUNDUS_UNIFORMS),
        )

