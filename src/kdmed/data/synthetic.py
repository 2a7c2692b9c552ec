"""Synthetic chest X-rays and fundus photographs: the book's offline default data.

Neither the paper's images nor pretrained weights can be downloaded in every
environment, so the book runs end to end on two rendered datasets that keep the
properties the study depends on:

* :class:`SyntheticChest` draws its label vectors from the REAL CheXpert label
  table (frontal rows, U-Zeros), so prevalence and co-occurrence are CheXpert's,
  and renders each finding as its own visual sign of random strength over a
  per-patient anatomy. Three "institutions" play the paper's sources:
  ``"A"`` plays NIH ChestX-ray14 (the large source that pre-trains the
  transfer-learning initialisation), ``"B"`` plays MIMIC-CXR (the teacher's
  large source) and ``"C"`` plays CheXpert (the small target). They differ in
  label mix and in acquisition style (grey-level curve, noise, blur, framing,
  body size) but share the anatomy and the signs, so knowledge transfers.
* :class:`SyntheticFundus` renders colour fundus photographs with diabetic
  retinopathy lesions growing with the grade (EyePACS grade mix): the
  "other domain" teacher source of the cross-domain chapter.

Design rules, each tested:

* Deterministic per ``(seed, institution, split, index)``: image ``i`` is the same
  whether rendered alone, in a batch, in a subset or in a larger ``n``. Per-image
  metadata comes from fixed-size chunks of a seeded stream (prefix-stable), the
  pixels from a per-image stream. Rendering uses only correctly rounded float
  operations (no exp/sin/pow), so pixels do not depend on the CPU's SIMD paths.
* No global pixel statistic carries label information: each image's grey-level
  histogram is matched to its institution's target curve (with a label-free
  per-image exposure jitter), so mean, std and every percentile are set by
  acquisition, not by findings.
* Splits are disjoint patient sets drawn from different seed streams; patients
  have 1-3 images with the same anatomy.
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kdmed.data.base import ImageDataset
from kdmed.data.chexpert import CLASSES

#: the 14 CheXpert observations, in the order of the official CSV
CHEXPERT_CLASSES: tuple[str, ...] = tuple(CLASSES)
#: the classes drawn as a visual sign ("No Finding" is the absence of all pathology signs)
FINDINGS: tuple[str, ...] = CHEXPERT_CLASSES[1:]
FUNDUS_CLASSES: tuple[str, ...] = tuple(f"grade {g}" for g in range(5))
#: EyePACS 2015 training-set grade mix (35,126 images), rounded
FUNDUS_GRADE_MIX: tuple[float, ...] = (0.73, 0.07, 0.15, 0.025, 0.025)
DEFAULT_SIZES = {"train": 20000, "val": 2000, "test": 2000}
#: bump when the pixels change: part of the image-cache key
RENDER_VERSION = 1

_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_CHUNK = 1024  # metadata is drawn in chunks of this many rows so that a larger n keeps the prefix
_P_PATIENTS, _P_IMAGES, _P_TEXTURE, _P_RENDER = 1, 2, 3, 4
_N_UNIFORMS = 96  # per-image uniforms: 8 global, 6 for each of the 13 findings, 2 for the shading
_ANATOMY = (
    "body_width",
    "lung_offset",
    "lung_width",
    "lung_top",
    "diaphragm",
    "dome_asymmetry",
    "heart_width",
    "heart_height",
    "heart_x",
    "heart_y",
    "mediastinum_width",
    "rib_period",
    "rib_phase",
    "rib_curve",
)
_ANATOMY_RANGES = {
    "body_width": (0.80, 0.92),
    "lung_offset": (0.36, 0.43),
    "lung_width": (0.26, 0.32),
    "lung_top": (-0.80, -0.70),
    "diaphragm": (0.40, 0.55),
    "dome_asymmetry": (0.02, 0.07),
    "heart_width": (0.36, 0.42),
    "heart_height": (0.25, 0.30),
    "heart_x": (0.07, 0.14),
    "heart_y": (0.13, 0.2),
    "mediastinum_width": (0.085, 0.115),
    "rib_period": (0.15, 0.19),
    "rib_phase": (0.0, 1.0),
    "rib_curve": (0.20, 0.35),
}


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


# ---------------------------------------------------------------------------- shared machinery
def _check_common(name: str, split: str, image_size: int, n: int | None, seed: int) -> int:
    if split not in _SPLIT_CODE:
        raise ValueError(f"{name}: unknown split {split!r}; expected one of {tuple(_SPLIT_CODE)}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise ValueError(f"{name}: image_size must be an integer >= 8, got {image_size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name}: seed must be a non-negative integer, got {seed!r}")
    if n is None:
        n = DEFAULT_SIZES[split]
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{name}: n (number of images) must be a non-negative integer, got {n!r}")
    return int(n)


def _patients(stream, n: int, size_probs: tuple[float, ...], n_anatomy: int):
    """Image -> patient, rank within patient, per-patient uniforms and the patient's image count.

    Drawn chunk by chunk, so the first n images do not depend on n (the last
    patient's count is its full count even when n cuts it).
    """
    counts, anatomy, total, k = [], [], 0, 0
    cut = np.cumsum(size_probs)[:-1]
    while total < n:
        rng = stream(_P_PATIENTS, k)
        c = 1 + np.searchsorted(cut, rng.random(_CHUNK), side="right")
        counts.append(c)
        anatomy.append(rng.random((_CHUNK, n_anatomy)))
        total += int(c.sum())
        k += 1
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    anatomy = np.concatenate(anatomy) if anatomy else np.zeros((0, n_anatomy))
    patient = np.repeat(np.arange(len(counts)), counts)[:n]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - first[patient]
    n_pat = int(patient[-1]) + 1 if n else 0
    return patient, rank, anatomy[:n_pat], counts[patient]


def _image_uniforms(stream, n: int, width: int) -> np.ndarray:
    """``[n, width]`` uniforms per image, chunked so that row i does not depend on n."""
    chunks = [stream(_P_IMAGES, k).random((_CHUNK, width)) for k in range(-(-n // _CHUNK))]
    return np.concatenate(chunks)[:n] if chunks else np.zeros((0, width))


def _ramp(x, width):
    """Soft step: 0 below ``-width/2``, 1 above ``width/2``, linear between."""
    return np.clip(x * (1.0 / width) + 0.5, 0.0, 1.0)


def _qdist(u, v, cx, cy, rx, ry):
    """Squared normalised radius of (u, v) in the ellipse centred at (cx, cy)."""
    a = (u - cx) / rx
    b = (v - cy) / ry
    return a * a + b * b


def _ellipse(u, v, cx, cy, rx, ry, edge):
    """Soft-edged filled ellipse (edge width ``edge`` in half-widths)."""
    q = _qdist(u, v, cx, cy, rx, ry)
    # near the rim, distance to the border is about r (1 - q) / 2
    return np.clip((1.0 - q) * ((rx + ry) * 0.25 / edge) + 0.5, 0.0, 1.0)


def _bump(u, v, cx, cy, rx, ry):
    """Smooth blob ``(1 - q)^2`` inside the ellipse, 0 outside (a Gaussian without exp)."""
    w = np.clip(1.0 - _qdist(u, v, cx, cy, rx, ry), 0.0, None)
    return w * w


def _segment(u, v, x0, y0, x1, y1, width):
    """Soft line segment of half-width ``width``."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ex = u - x0 - t * dx
    ey = v - y0 - t * dy
    return np.clip(1.0 - (ex * ex + ey * ey) / (width * width), 0.0, 1.0)


def _tri(x):
    """Triangle wave with period 1, values in [0, 1] (a sine without sin)."""
    return np.abs(x - np.floor(x) - 0.5) * 2.0


def _col(a):
    """Per-image scalars ``[B]`` as ``[B, 1, 1]`` float32 for broadcasting over pixels."""
    return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)


def _blur(img: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
    """Blur each image ``[B, H, W]`` by repeated [1, 2, 1] / 4 passes (variance 1/2 px^2 each)."""
    sigma_px = np.asarray(sigma_px, dtype=np.float64)
    passes = np.rint(2.0 * sigma_px * sigma_px).astype(int)
    for p in np.unique(passes[passes > 0]):
        idx = np.flatnonzero(passes == p)
        x = img[idx]
        for _ in range(int(p)):
            e = np.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)
            x = (e[:, :, :-2] + e[:, :, 2:] + 2.0 * x) * 0.25
            e = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
            x = (e[:, :-2] + e[:, 2:] + 2.0 * x) * 0.25
        img[idx] = x
    return img


def _texture(coarse: np.ndarray, fu: np.ndarray, fv: np.ndarray) -> list[np.ndarray]:
    """Separable bilinear upsampling of per-image coarse noise ``[B, K, G, G]`` -> K arrays ``[B, H, W]``.

    ``fu`` ``[B, W]`` and ``fv`` ``[B, H]`` are the grid coordinates (0..G-1) of each
    pixel column and row, so the texture moves with the image's zoom and shift.
    """
    g = coarse.shape[-1]
    fu = np.clip(fu, 0.0, g - 1.001).astype(np.float32)
    fv = np.clip(fv, 0.0, g - 1.001).astype(np.float32)
    iu, iv = fu.astype(np.intp), fv.astype(np.intp)
    au, av = (fu - iu)[:, None, :], (fv - iv)[:, :, None]
    b = np.arange(len(coarse))[:, None]
    out = []
    for k in range(coarse.shape[1]):
        c = coarse[:, k].transpose(0, 2, 1)  # [B, G(u), G(v)]
        cols = c[b, iu] + (c[b, iu + 1] - c[b, iu]) * au.transpose(0, 2, 1)  # [B, W, G(v)]
        cols = cols.transpose(0, 2, 1)  # [B, G(v), W]
        top, bot = cols[b, iv], cols[b, iv + 1]  # whole rows: [B, H, W]
        out.append(top + (bot - top) * av)
    return out


def _splat(shape, b, cy, cx, sigma_px, amp) -> np.ndarray:
    """Sum of small soft dots (biweight kernels of radius 2 sigma) at pixel coordinates."""
    bsz, h, w = shape
    out = np.zeros(bsz * h * w)
    if len(b):
        rad = max(1, int(math.ceil(2.0 * float(np.max(sigma_px)))))
        off = np.arange(-rad, rad + 1)
        py = np.floor(cy).astype(np.intp)[:, None, None] + off[None, :, None]
        px = np.floor(cx).astype(np.intp)[:, None, None] + off[None, None, :]
        ey = py + 0.5 - cy[:, None, None]
        ex = px + 0.5 - cx[:, None, None]
        sig = sigma_px[:, None, None]
        k = np.clip(1.0 - (ey * ey + ex * ex) / (4.0 * sig * sig), 0.0, None)
        wgt = k * k * amp[:, None, None]
        py, px = np.broadcast_arrays(py, px)
        ok = (py >= 0) & (py < h) & (px >= 0) & (px < w) & (wgt > 0)
        flat = (b[:, None, None] * h + py) * w + px
        # bincount adds in input order, so each pixel's sum does not depend on the batch
        out = np.bincount(flat[ok], weights=np.broadcast_to(wgt, ok.shape)[ok], minlength=bsz * h * w)
    return out.reshape(shape).astype(np.float32)


def _match_histogram(density: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """Replace each image's values by ``curve`` in rank order; equal values get the mean of their ranks' levels.

    ``density`` ``[B, P]`` float32, ``curve`` ``[B, P]`` non-decreasing -> float64 ``[B, P]``.
    Averaging over ties keeps flat regions (background, abdomen) flat and keeps the
    image mean equal to the curve's mean whatever the content.
    """
    b, p = density.shape
    pos = density - density.min(axis=1, keepdims=True) + np.float32(1.0)
    bits = pos.view(np.int32).astype(np.int64)  # positive float32 bit patterns sort like their values
    shift = max(1, int(p - 1).bit_length())
    # the pixel index makes every key unique, so the order never depends on the sort algorithm
    order = np.argsort((bits << shift) | np.arange(p, dtype=np.int64), axis=1)
    flat_order = (order + (np.arange(b) * p)[:, None]).reshape(-1)
    sv = bits.reshape(-1)[flat_order]
    new = np.empty(b * p, dtype=bool)
    new[0] = True
    np.not_equal(sv[1:], sv[:-1], out=new[1:])
    new[::p] = True  # every image starts a new group
    group = np.cumsum(new) - 1
    # bincount adds in input order, so a group's sum does not depend on the batch
    level = np.bincount(group, weights=curve.reshape(-1)) / np.bincount(group)
    out = np.empty(b * p)
    out[flat_order] = level[group]
    return out.reshape(b, p)


def _grey_curve(p: int, darkness, contrast, black, white) -> np.ndarray:
    """Target grey levels (float ``[B, P]``, 0..255) for ranks 0..P-1: a gamma-like curve plus an S-curve."""
    t = ((np.arange(p, dtype=np.float32) + np.float32(0.5)) / np.float32(p))[None, :]
    k = np.asarray(darkness, dtype=np.float32)[:, None]
    c = np.asarray(contrast, dtype=np.float32)[:, None]
    g = t / (t + k * (1.0 - t))  # a rational stand-in for t ** gamma
    s = g * g * (3.0 - 2.0 * g)
    g = (1.0 - c) * g + c * s
    lo = np.asarray(black, dtype=np.float32)[:, None]
    hi = np.asarray(white, dtype=np.float32)[:, None]
    return (lo + (hi - lo) * g) * np.float32(255.0)


class _SyntheticBase(ImageDataset):
    """Shared plumbing: seeded streams, batched rendering, per-row loading."""

    #: cheap to regenerate: the image cache keeps these in memory unless a cache_dir is given
    cache_by_default = False
    _dataset_code = 0
    _institution_code = 0

    def _stream(self, purpose: int, k: int) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed, self._dataset_code, self._institution_code, _SPLIT_CODE[self.split], purpose, int(k)]
        )

    def _load_uint8(self, source_row: int) -> np.ndarray:
        return self._render(np.array([source_row], dtype=np.int64))[0]

    def _load_batch_uint8(self, source_rows) -> np.ndarray:
        """Render many source rows at once (vectorised): uint8 ``[B, channels, S, S]``."""
        rows = np.asarray(source_rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self._n):
            raise IndexError(f"{self.name}: source rows must lie in 0..{self._n - 1}")
        if not len(rows):
            return np.zeros((0, self.channels, self.image_size, self.image_size), np.uint8)
        return self._render(rows)

    def _render_uniforms(self, rows: np.ndarray, n_uniforms: int):
        """Per-image uniforms ``[B, K]`` and white noise ``[B, S, S]`` from each image's own stream."""
        s = self.image_size
        uni = np.empty((len(rows), n_uniforms))
        noise = np.empty((len(rows), s, s), dtype=np.float32)
        for j, r in enumerate(rows):
            rng = self._stream(_P_RENDER, r)
            uni[j] = rng.random(n_uniforms)
            noise[j] = rng.standard_normal((s, s), dtype=np.float32)
        return uni, noise

    @abc.abstractmethod
    def _render(self, rows: np.ndarray) -> np.ndarray:
        """Render source rows as uint8 ``[B, channels, S, S]``."""


# ---------------------------------------------------------------------------- chest
class SyntheticChest(_SyntheticBase):
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
        n = _check_common(self.name, split, image_size, n, seed)
        if institution not in INSTITUTIONS:
            raise ValueError(f"{self.name}: unknown institution {institution!r}; expected one of {sorted(INSTITUTIONS)}")
        self.institution = institution
        self.style = INSTITUTIONS[institution]
        self.seed = int(seed)
        self.split = split
        self._institution_code = ord(institution)
        self._n = n
        stream = self._stream

        patient, rank, anat_u, _ = _patients(stream, n, (0.55, 0.25, 0.20), len(_ANATOMY))
        u = _image_uniforms(stream, n, 2 + 2 * len(FINDINGS))
        raw_all, info = chexpert_frontal_labels()
        cdf = _label_cdf(institution)
        fresh = np.minimum(np.searchsorted(cdf, u[:, 0] * cdf[-1], side="right"), len(cdf) - 1)
        # a follow-up image repeats the previous study's findings half of the time
        repeat = (rank > 0) & (u[:, 1] < 0.5)
        src = np.maximum.accumulate(np.where(repeat, 0, np.arange(n))) if n else np.zeros(0, np.int64)
        real_row = fresh[src]
        raw = raw_all[real_row]
        labels = (raw == 1).astype(np.float32)

        nf = len(FINDINGS)
        u_strength, u_unc = u[:, 2 : 2 + nf], u[:, 2 + nf :]
        raw_f = raw[:, 1:]
        strength = np.where(raw_f == 1, 0.15 + 0.85 * u_strength, 0.0)
        faint = (raw_f == -1) & (u_unc < 0.5)
        strength = np.where(faint, 0.10 + 0.25 * u_strength, strength)
        self._strength = strength.astype(np.float32)

        lo = np.array([_ANATOMY_RANGES[a][0] for a in _ANATOMY])
        hi = np.array([_ANATOMY_RANGES[a][1] for a in _ANATOMY])
        anatomy = lo + (hi - lo) * anat_u
        self._anatomy = anatomy[patient].astype(np.float32) if n else np.zeros((0, len(_ANATOMY)), np.float32)
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
        for j, a in enumerate(_ANATOMY):
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

    def cache_identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "image_size": self.image_size,
            "institution": self.institution,
            "seed": self.seed,
            "render_version": RENDER_VERSION,
        }

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(institution=self.institution, plays=self.style.plays, seed=self.seed)
        return d

    # .................................................................. rendering
    def _render(self, rows: np.ndarray) -> np.ndarray:
        return render_chest(
            anatomy=self._anatomy[rows],
            strength=self._strength[rows],
            style=self.style,
            image_size=self.image_size,
            uniforms_and_noise=self._render_uniforms(rows, _N_UNIFORMS),
            texture=self._texture(self._patient[rows]),
        )

    def _texture(self, patients: np.ndarray) -> np.ndarray:
        """Per-patient coarse noise ``[B, 2, G, G]``: lung markings and patchiness follow the patient."""
        out = np.empty((len(patients), 2, 12, 12), dtype=np.float32)
        for j, p in enumerate(patients):
            out[j] = self._stream(_P_TEXTURE, p).standard_normal((2, 12, 12), dtype=np.float32)
        return out


def _devices(u, v, r, s) -> np.ndarray:
    """Support devices for the images that have them: ET tube, central line, ECG leads, pacemaker."""
    f32 = np.float32
    dev = np.zeros_like(u)
    wid = _col(0.012 + 0.012 * s[:, 0, 0])
    et, leads, pm = r[:, 0] < 0.5, r[:, 2] < 0.5, r[:, 3] < 0.15
    cvc = (r[:, 1] < 0.6) | ~(et | leads | pm)  # every device image shows at least one device

    def put(mask, draw):
        j = np.flatnonzero(mask)
        if len(j):
            dev[j] = np.maximum(dev[j], draw(j, u[j], v[j]))

    put(et, lambda j, uj, vj: _segment(uj, vj, f32(0.0), f32(-1.2), f32(0.0), _col(-0.45 + 0.1 * r[j, 4]), wid[j]))

    def central_line(j, uj, vj):
        side = _col(np.where(r[j, 5] < 0.5, -1.0, 1.0))
        tip = _col(-0.2 + 0.15 * r[j, 4])
        return np.maximum(
            _segment(uj, vj, 0.55 * side, f32(-0.78), 0.15 * side, f32(-0.6), wid[j]),
            _segment(uj, vj, 0.15 * side, f32(-0.6), f32(0.05), tip, wid[j]),
        )

    put(cvc, central_line)

    def ecg_leads(j, uj, vj):
        out = np.zeros_like(uj)
        for lx, ly in ((-0.55, -0.55), (0.55, -0.5), (0.5, 0.35)):
            q = _qdist(uj, vj, _col(lx + 0.1 * (r[j, 4] - 0.5)), _col(ly + 0.1 * (r[j, 5] - 0.5)), f32(0.05), f32(0.05))
            out = np.maximum(out, np.clip(1.0 - np.abs(q - 0.6) * 4.0, 0.0, 1.0))
        return out

    put(leads, ecg_leads)

    def pacemaker(j, uj, vj):
        box = _ellipse(uj, vj, f32(0.5), f32(-0.62), f32(0.09), f32(0.06), 0.01)
        lead = np.maximum(
            _segment(uj, vj, f32(0.45), f32(-0.62), f32(0.1), f32(-0.3), wid[j]),
            _segment(uj, vj, f32(0.1), f32(-0.3), f32(0.02), f32(0.3), wid[j]),
        )
        return np.maximum(box, lead)

    put(pm, pacemaker)
    return dev


#: how visible each finding is (multiplies its strength). Calibrated with benchmarks/bench_data.py so
#: that a tiny CNN at 64 px gains clearly from 300 -> 5000 images: subtle, rare signs are boosted,
#: the easy ones (effusion, oedema) damped. Part of the pixels: bump RENDER_VERSION when changing it.
VISIBILITY: dict[str, float] = {
    "Enlarged Cardiomediastinum": 1.0,
    "Cardiomegaly": 1.0,
    "Lung Opacity": 2.2,
    "Lung Lesion": 2.5,
    "Edema": 0.85,
    "Consolidation": 2.0,
    "Pneumonia": 1.5,
    "Atelectasis": 2.5,
    "Pneumothorax": 1.3,
    "Pleural Effusion": 0.8,
    "Pleural Other": 1.5,
    "Fracture": 3.0,
    "Support Devices": 1.0,
}


def render_chest(*, anatomy, strength, style, image_size, uniforms_and_noise, texture) -> np.ndarray:
    """Render chest images (uint8 ``[B, 1, S, S]``) from per-image metadata; see :class:`SyntheticChest`.

    ``anatomy`` ``[B, len(_ANATOMY)]`` (per patient), ``strength`` ``[B, 13]`` (per finding,
    0 = absent, scaled by :data:`VISIBILITY` here), ``style`` the institution,
    ``uniforms_and_noise`` the image's own random numbers, ``texture`` per-patient coarse noise.
    """
    U, noise = uniforms_and_noise
    S = image_size
    B = len(strength)
    A = {name: _col(anatomy[:, j]) for j, name in enumerate(_ANATOMY)}
    st = {name: strength[:, j] * VISIBILITY[name] for j, name in enumerate(FINDINGS)}
    f32 = np.float32

    def uu(k):  # per-image uniform slot k as [B]
        return U[:, k]

    # framing: zoom, shift and a small rotation (polynomial cos/sin keep it exact)
    zoom = style.zoom * style.body_scale * (1.0 + 0.06 * (2 * uu(0) - 1))
    dx = 0.05 * (2 * uu(1) - 1)
    dy = style.shift_y + 0.04 * (2 * uu(2) - 1)
    rot = style.rotation * (2 * uu(3) - 1)
    cos, sin = 1.0 - rot * rot / 2.0, rot - rot * rot * rot / 6.0
    grid = ((np.arange(S, dtype=f32) + f32(0.5)) * f32(2.0 / S) - f32(1.0))
    gx, gy = grid[None, None, :] - _col(dx), grid[None, :, None] - _col(dy)
    u = (gx * _col(cos / zoom) + gy * _col(sin / zoom)).astype(f32)
    v = (gy * _col(cos / zoom) - gx * _col(sin / zoom)).astype(f32)

    # texture lives in body coordinates (zoom and shift; the small rotation is ignored)
    gscale = (texture.shape[-1] - 1) / 2.4
    tex, tex2 = _texture(
        texture,
        (grid[None, :] - dx[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
        (grid[None, :] - dy[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
    )

    # ---- anatomy
    body = _ellipse(u, v, 0.0, 0.12, A["body_width"], f32(1.12), 0.04)
    lung_cy = (A["lung_top"] + A["diaphragm"]) * 0.5
    lung_ry = (A["diaphragm"] - A["lung_top"]) * 0.5 + 0.08
    dia = {-1: A["diaphragm"] - A["dome_asymmetry"], 1: A["diaphragm"]}
    # atelectasis pulls the hemidiaphragm of its side up (volume loss)
    atel_side = np.where(uu(8 + 6 * FINDINGS.index("Atelectasis")) < 0.5, -1, 1)
    atel_lift = _col(0.06 * st["Atelectasis"])
    lungs = {}
    for side in (-1, 1):
        cx = A["lung_offset"] * side
        d = dia[side] - atel_lift * _col(atel_side == side)
        a = (u - cx) / A["lung_width"]
        dome = d - 0.08 + 0.22 * a * a
        lungs[side] = _ellipse(u, v, cx, lung_cy, A["lung_width"], lung_ry, 0.03) * _ramp(dome - v, 0.04) * body
    cm = _col(st["Cardiomegaly"])
    # the heart sits on the left hemidiaphragm; heart_y is its height above the dome
    heart = _ellipse(
        u, v, A["heart_x"] + 0.1 * cm, A["diaphragm"] - A["heart_y"] - 0.05 * cm,
        A["heart_width"] * (1 + 0.35 * cm), A["heart_height"] * (1 + 0.12 * cm), 0.03,
    )
    ecm = _col(st["Enlarged Cardiomediastinum"])
    med_w = A["mediastinum_width"] * (1 + 0.8 * ecm * _ramp(0.0 - v, 0.5))
    med = _ramp(med_w - np.abs(u - 0.01), 0.03) * _ramp(v + 0.95, 0.05) * _ramp(0.35 - v, 0.1)
    soft = np.maximum(heart, med)
    lung = (lungs[-1] + lungs[1]) * (1.0 - soft)
    spine = _ramp(0.06 - np.abs(u), 0.02)
    trachea = _ramp(0.035 - np.abs(u - 0.005), 0.02) * _ramp(-0.42 - v, 0.06) * body
    w = (v - A["rib_curve"] * u * u) / A["rib_period"] + A["rib_phase"]
    rib_wave = np.abs(w - np.floor(w) - 0.5) * 2.0
    ribs = _ramp(rib_wave - 0.62, 0.25) * _ramp(np.abs(u) - 0.08, 0.04) * _ramp(A["diaphragm"] + 0.1 - v, 0.1)
    # ribs stand out over the air-filled lungs, much less over soft tissue
    ribs *= 0.3 * body + 0.7 * np.minimum(lungs[-1] + lungs[1], 1.0)
    au = np.abs(u)
    clav = _ramp(0.045 - np.abs(v + 0.78 + 0.25 * (au - 0.08)), 0.03) * _ramp(au - 0.08, 0.03) * _ramp(0.55 - au, 0.05)
    hila = _bump(u, v, -0.2, -0.05, 0.35, 0.45) + _bump(u, v, 0.2, -0.05, 0.35, 0.45)
    markings = lung * (0.035 * tex + 0.05 * hila)

    D = 0.5 * body - 0.42 * lung + 0.10 * soft + 0.10 * spine - 0.25 * trachea + 0.07 * ribs + 0.10 * clav + markings
    D = D.astype(f32)

    def sub(name):
        return np.flatnonzero(st[name] > 0)

    def slots(name, idx):
        base = 8 + 6 * FINDINGS.index(name)
        return U[idx, base : base + 6]

    def lung_point(idx, r, zone_lo, zone_hi):
        """A point inside a random lung: side, x, y (zone in fractions of the lung height)."""
        side = np.where(r[:, 0] < 0.5, -1.0, 1.0)
        x = side * A["lung_offset"][idx, 0, 0] + (2 * r[:, 1] - 1) * 0.55 * A["lung_width"][idx, 0, 0]
        top, bot = A["lung_top"][idx, 0, 0], A["diaphragm"][idx, 0, 0]
        y = top + (bot - top) * (zone_lo + (zone_hi - zone_lo) * r[:, 2])
        return side, _col(x), _col(y)

    # ---- findings (each on the sub-batch that has it)
    idx = sub("Lung Opacity")
    if len(idx):
        r, s = slots("Lung Opacity", idx), _col(st["Lung Opacity"][idx])
        ui, vi = u[idx], v[idx]
        acc = np.zeros_like(ui)
        for k in range(2):
            _, x, y = lung_point(idx, np.roll(r, 2 * k, axis=1), 0.25, 0.95)
            rad = _col(0.14 + 0.08 * r[:, 3 + k])
            acc += _bump(ui, vi, x, y, rad, rad * 1.2) * _col(r[:, 5] > 0.5 * k)
        D[idx] += 0.16 * s * acc * (0.7 + 0.3 * tex2[idx]) * lung[idx]
    idx = sub("Lung Lesion")
    if len(idx):
        r, s = slots("Lung Lesion", idx), _col(st["Lung Lesion"][idx])
        _, x, y = lung_point(idx, r, 0.1, 0.85)
        rad = _col(0.045 + 0.04 * r[:, 3])
        D[idx] += 0.3 * s * _ellipse(u[idx], v[idx], x, y, rad, rad, 0.012)
    idx = sub("Edema")
    if len(idx):
        s = _col(st["Edema"][idx])
        haze = _bump(u[idx], v[idx], -0.22, 0.0, 0.42, 0.55) + _bump(u[idx], v[idx], 0.22, 0.0, 0.42, 0.55)
        D[idx] += 0.16 * s * haze * (0.85 + 0.15 * tex[idx]) * lung[idx]
    idx = sub("Consolidation")
    if len(idx):
        r, s = slots("Consolidation", idx), _col(st["Consolidation"][idx])
        _, x, _ = lung_point(idx, r, 0.0, 1.0)
        y = _col(A["diaphragm"][idx, 0, 0] - 0.18 - 0.1 * r[:, 2])
        rad = _col(0.18 + 0.1 * r[:, 3])
        fissure = _col(A["diaphragm"][idx, 0, 0] - 0.35 - 0.15 * r[:, 4])
        reg = _ellipse(u[idx], v[idx], x, y, rad * 1.2, rad, 0.05) * _ramp(v[idx] - fissure, 0.03)
        D[idx] += 0.28 * s * reg * lung[idx]
    idx = sub("Pneumonia")
    if len(idx):
        r, s = slots("Pneumonia", idx), _col(st["Pneumonia"][idx])
        _, x, y = lung_point(idx, r, 0.35, 0.85)
        ui, vi = u[idx], v[idx]
        rad = _col(0.12 + 0.06 * r[:, 3])
        patch = _ellipse(ui, vi, x, y, rad, rad * 1.1, 0.06)
        # air bronchograms: dark branching stripes inside the dense patch
        stripes = _ramp(0.3 - _tri((ui - x) * 7.0 + (vi - y) * 3.0 * _col(2 * r[:, 4] - 1) + _col(r[:, 5])), 0.15)
        D[idx] += 0.3 * s * patch * (1.0 - 0.55 * stripes) * lung[idx]
    idx = sub("Atelectasis")
    if len(idx):
        r, s = slots("Atelectasis", idx), _col(st["Atelectasis"][idx])
        side = atel_side[idx].astype(float)
        x = side * A["lung_offset"][idx, 0, 0] + 0.1 * (2 * r[:, 1] - 1)
        y = A["diaphragm"][idx, 0, 0] - 0.2 - 0.15 * r[:, 2]
        half, tilt = 0.12 + 0.08 * r[:, 3], 0.25 * (2 * r[:, 4] - 1)
        band = _segment(u[idx], v[idx], _col(x - half), _col(y - tilt * half), _col(x + half), _col(y + tilt * half), 0.04)
        D[idx] += 0.3 * s * band * lung[idx]
    idx = sub("Pneumothorax")
    if len(idx):
        r, s = slots("Pneumothorax", idx), st["Pneumothorax"][idx]
        side = np.where(r[:, 0] < 0.5, -1, 1)
        ui, vi = u[idx], v[idx]
        lk = np.where(_col(side < 0), lungs[-1][idx], lungs[1][idx]) * (1.0 - soft[idx])
        f = _col(1.0 - 0.35 * s)
        cx = _col(side * (A["lung_offset"][idx, 0, 0] - 0.2 * A["lung_width"][idx, 0, 0] * (1 - f[:, 0, 0])))
        cy = lung_cy[idx] + 0.25 * lung_ry[idx] * (1 - f)
        q = _qdist(ui, vi, cx, cy, A["lung_width"][idx] * f, lung_ry[idx] * f)
        gas = lk * _ramp(q - 1.0, 0.08)
        line = lk * np.clip(1.0 - np.abs(q - 1.0) * 12.0, 0.0, 1.0)
        D[idx] += gas * (-markings[idx] - 0.05 * _col(s)) + 0.12 * _col(np.sqrt(s)) * line
    idx = sub("Pleural Effusion")
    if len(idx):
        r, s = slots("Pleural Effusion", idx), _col(st["Pleural Effusion"][idx])
        h = 0.06 + 0.35 * s
        sides = np.where(r[:, 0] < 0.35, -1, np.where(r[:, 0] < 0.7, 1, 0))  # 0 = both sides
        ui, vi = u[idx], v[idx]
        for side in (-1, 1):
            on = _col((sides == side) | (sides == 0))
            cx = A["lung_offset"][idx] * side
            lat = np.clip(side * (ui - cx) / A["lung_width"][idx] + 0.3, 0.0, 1.3)
            level = dia[side][idx] - 0.08 - h * (1.0 + 0.7 * lat)
            fluid = lungs[side][idx] * (1.0 - soft[idx]) * _ramp(vi - level, 0.03)
            D[idx] += 0.42 * on * fluid
    idx = sub("Pleural Other")
    if len(idx):
        r, s = slots("Pleural Other", idx), _col(st["Pleural Other"][idx])
        side = np.where(r[:, 0] < 0.5, -1.0, 1.0)
        ui, vi = u[idx], v[idx]
        cx = _col(side) * A["lung_offset"][idx]
        q = _qdist(ui, vi, cx, lung_cy[idx], A["lung_width"][idx], lung_ry[idx])
        lateral = _ramp(_col(side) * (ui - cx) - 0.05, 0.1)
        y0 = _col(A["lung_top"][idx, 0, 0] + 0.3 + 0.5 * r[:, 2])
        extent = _ramp(0.3 - np.abs(vi - y0), 0.1)
        band = np.clip(1.0 - np.abs(q - 0.88) * (6.0 / (0.5 + 0.5 * np.minimum(s, 1.5))), 0.0, 1.0)
        # pleural plaques: thickening along the wall plus en-face plaques over the lung
        # (elongated, denser than soft tissue where calcified)
        plaques = np.zeros_like(ui)
        for k in range(2):
            _, px, py = lung_point(idx, np.roll(r, 3 * k, axis=1), 0.3, 0.9)
            plaques = np.maximum(plaques, _ellipse(ui, vi, px, py, f32(0.035), f32(0.075), 0.015))
        D[idx] += 0.4 * s * (band * lateral * extent + plaques * lung[idx])
    idx = sub("Fracture")
    if len(idx):
        r, s = slots("Fracture", idx), _col(st["Fracture"][idx])
        side = np.where(r[:, 0] < 0.5, -1.0, 1.0)
        ui, vi = u[idx], v[idx]
        x = _col(side * (A["lung_offset"][idx, 0, 0] + (0.2 + 0.3 * r[:, 1]) * A["lung_width"][idx, 0, 0]))
        y = _col(A["lung_top"][idx, 0, 0] + 0.2 + 0.6 * r[:, 2])
        wi = (vi - A["rib_curve"][idx] * ui * ui) / A["rib_period"][idx] + A["rib_phase"][idx] + 0.5 * np.minimum(s, 1.0)
        shifted = _ramp(np.abs(wi - np.floor(wi) - 0.5) * 2.0 - 0.62, 0.25)
        shifted *= 0.3 * body[idx] + 0.7 * np.minimum(lungs[-1][idx] + lungs[1][idx], 1.0)
        # the rib is displaced lateral to the break, with a small callus on it
        m = _ellipse(ui, vi, x, y, f32(0.13), f32(0.1), 0.03) * _ramp(_col(side) * (ui - x), 0.03)
        D[idx] += 0.07 * (shifted - ribs[idx]) * m + 0.1 * s * _bump(ui, vi, x, y, 0.07, 0.06)
    idx = sub("Support Devices")
    if len(idx):
        r, s = slots("Support Devices", idx), _col(st["Support Devices"][idx])
        dev = _devices(u[idx], v[idx], r, s)
        D[idx] += 0.45 * dev

    # ---- acquisition: blur, noise, then the institution's grey-level curve
    blur_px = style.blur * (0.6 + 0.8 * uu(4)) * (S / 2.0)
    D = _blur(D, blur_px)
    # a faint label-free shading (heel effect, scatter) leaves no exactly flat region, so every
    # image gets exactly its curve's histogram and no global statistic depends on the content
    D += f32(2e-3) * (_col(2 * uu(86) - 1) * gx + _col(2 * uu(87) - 1) * gy + f32(0.3) * tex)
    curve = _grey_curve(
        S * S,
        style.darkness * (0.8 + 0.4 * uu(6)),
        np.clip(style.contrast + 0.15 * (2 * uu(7) - 1), 0.0, 1.0),
        np.full(B, style.black),
        np.full(B, style.white),
    )
    grey = _match_histogram(D.reshape(B, S * S), curve).reshape(B, S, S)
    # detector noise is added after the grey-level curve, so it is label-free by construction
    grey += noise * _col(style.noise * (0.7 + 0.6 * uu(5)))
    return np.clip(np.floor(grey + 0.5), 0, 255).astype(np.uint8).reshape(B, 1, S, S)


# ---------------------------------------------------------------------------- fundus
_FUNDUS_UNIFORMS = 256
# lesion slots per image (a slot is drawn when its index is below the image's count)
_N_MA, _N_HEM, _N_EX, _N_CWS, _N_DRUSEN, _N_DUST = 24, 12, 16, 3, 10, 3
#: per grade: (microaneurysms lo, hi), (haemorrhages lo, hi), P(exudates), P(cotton-wool), beading, new vessels
_GRADE_LESIONS = {
    0: ((0, 0), (0, 0), 0.0, 0.0, False, False),
    1: ((2, 6), (0, 0), 0.0, 0.0, False, False),
    2: ((4, 12), (1, 4), 0.6, 0.3, False, False),
    3: ((8, 20), (5, 12), 0.7, 0.6, True, False),
    4: ((6, 16), (3, 8), 0.7, 0.5, True, True),
}


class SyntheticFundus(_SyntheticBase):
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
        n = _check_common(self.name, split, image_size, n, seed)
        if task not in ("grade", "referable"):
            raise ValueError(f"{self.name}: task must be 'grade' or 'referable', got {task!r}")
        self.task_name = task
        self.seed = int(seed)
        self.split = split
        self._n = n
        stream = self._stream
        patient, rank, _, n_eyes = _patients(stream, n, (0.15, 0.85), 1)
        u = _image_uniforms(stream, n, 13)
        cut = np.cumsum(FUNDUS_GRADE_MIX)[:-1]
        fresh = np.searchsorted(cut, u[:, 0], side="right")
        # the second eye has the first eye's grade 70% of the time (marginal mix unchanged)
        same = (rank > 0) & (u[:, 1] < 0.7)
        src = np.maximum.accumulate(np.where(same, 0, np.arange(n))) if n else np.zeros(0, np.int64)
        grade = fresh[src].astype(np.int64)
        lesions = np.array([_GRADE_LESIONS[g] for g in range(5)], dtype=object)
        ma_lo = np.array([lesions[g][0][0] for g in range(5)])[grade]
        ma_hi = np.array([lesions[g][0][1] for g in range(5)])[grade]
        he_lo = np.array([lesions[g][1][0] for g in range(5)])[grade]
        he_hi = np.array([lesions[g][1][1] for g in range(5)])[grade]
        p_ex = np.array([lesions[g][2] for g in range(5)])[grade]
        p_cw = np.array([lesions[g][3] for g in range(5)])[grade]
        n_ma = ma_lo + np.floor(u[:, 2] * (ma_hi - ma_lo + 1)).astype(np.int64)
        n_he = he_lo + np.floor(u[:, 3] * (he_hi - he_lo + 1)).astype(np.int64)
        n_ex = np.where(u[:, 4] < p_ex, 3 + np.floor(u[:, 5] * (_N_EX - 2)).astype(np.int64), 0)
        n_cw = np.where(u[:, 6] < p_cw, 1 + np.floor(u[:, 7] * _N_CWS).astype(np.int64), 0)
        # confounders at every grade: drusen look like exudates, dust on the lens like haemorrhages
        n_dr = np.where(u[:, 10] < 0.3, 3 + np.floor(u[:, 11] * (_N_DRUSEN - 2)).astype(np.int64), 0)
        n_dust = np.where(u[:, 12] < 0.4, 1 + np.floor(u[:, 12] / 0.4 * _N_DUST).astype(np.int64), 0)
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
        if task == "grade":
            classes, kind = FUNDUS_CLASSES, "multiclass"
            labels = np.eye(5, dtype=np.float32)[grade] if n else np.zeros((0, 5), np.float32)
        else:
            classes, kind = ("referable DR",), "binary"
            labels = (grade >= 2).astype(np.float32)[:, None]
        super().__init__(
            classes=classes, labels=labels, patient_ids=pid, table=table, task=kind, image_size=image_size, split=split
        )

    def cache_identity(self) -> dict[str, Any]:
        # the pixels do not depend on the task, so both tasks share cache entries
        return {
            "name": self.name,
            "split": self.split,
            "image_size": self.image_size,
            "seed": self.seed,
            "render_version": RENDER_VERSION,
        }

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(seed=self.seed, label=self.task_name)
        return d

    def _render(self, rows: np.ndarray) -> np.ndarray:
        patients = self._patient[rows]
        anat = np.empty((len(rows), 24))
        tex = np.empty((len(rows), 1, 10, 10), dtype=np.float32)
        for j, p in enumerate(patients):
            rng = self._stream(_P_TEXTURE, p)
            anat[j] = rng.random(24)
            tex[j] = rng.standard_normal((1, 10, 10), dtype=np.float32)
        return render_fundus(
            grade=self._grade[rows],
            counts=self._counts[rows],
            contrast=self._contrast[rows],
            right=self._right[rows],
            anatomy=anat,
            texture=tex,
            image_size=self.image_size,
            uniforms_and_noise=self._render_uniforms(rows, _FUNDUS_UNIFORMS),
        )


def _curve_vessel(uc, v, x0, y0, a, b, direction, length, width):
    """A vessel ``y = y0 + a sqrt(t) + b t`` along ``t = direction * (uc - x0)`` in [0, length], tapering.

    ``uc`` is per column ``[B, 1, W]`` and ``v`` per row ``[B, H, 1]``: the curve, its
    slope and width are computed per column, and only the distance is per pixel.
    """
    t = np.clip((uc - x0) * direction, 0.0, None)
    rt = np.sqrt(t)
    f = y0 + a * rt + b * t
    slope = b + a * 0.5 / np.maximum(rt, 0.05)
    w = width * (1.0 - 0.5 * np.minimum(t / length, 1.0))
    # vertical distance / sqrt(1 + slope^2) is the distance to the curve where it is smooth
    inv = (1.0 / (1.0 + slope * slope) / (w * w)).astype(np.float32)
    amp = (_ramp(length - t, 0.1) * _ramp(t - 0.02, 0.04)).astype(np.float32)
    d = v - f.astype(np.float32)
    return np.clip(1.0 - d * d * inv, 0.0, 1.0) * amp


def render_fundus(*, grade, counts, contrast, right, anatomy, texture, image_size, uniforms_and_noise) -> np.ndarray:
    """Render fundus photographs (uint8 ``[B, 3, S, S]``) from per-image metadata; see :class:`SyntheticFundus`."""
    U, noise = uniforms_and_noise
    S, B = image_size, len(grade)
    f32 = np.float32
    P = anatomy  # per-patient uniforms [B, 24]

    zoom = 1.0 + 0.05 * (2 * U[:, 0] - 1)
    dx, dy = 0.04 * (2 * U[:, 1] - 1), 0.04 * (2 * U[:, 2] - 1)
    grid = (np.arange(S, dtype=f32) + f32(0.5)) * f32(2.0 / S) - f32(1.0)
    u1 = (grid[None, None, :] - _col(dx)) / _col(zoom)  # per column [B, 1, W]
    v1 = (grid[None, :, None] - _col(dy)) / _col(zoom)  # per row [B, H, 1]
    mirror = _col(np.where(right > 0, 1.0, -1.0))
    uc1 = u1 * mirror  # canonical view: optic disc on the right
    u, v = np.broadcast_arrays(u1, v1)
    uc = np.broadcast_to(uc1, u.shape)

    gscale = (texture.shape[-1] - 1) / 2.4
    (tex,) = _texture(
        texture,
        (grid[None, :] - dx[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
        (grid[None, :] - dy[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
    )
    r2 = u * u + v * v
    field = _ramp(0.93 - np.sqrt(r2), 0.03)

    xd, yd = _col(0.40 + 0.06 * P[:, 0]), _col(0.06 * (2 * P[:, 1] - 1))
    rd = _col(0.10 + 0.025 * P[:, 2])
    disc = _ellipse(uc, v, xd, yd, rd * 0.9, rd, 0.02)
    cup = _bump(uc, v, xd, yd, rd * 0.5, rd * 0.55)
    xm, ym = xd - 0.85, yd + 0.05
    macula = _bump(uc, v, xm, ym, f32(0.2), f32(0.2))

    # vessel tree: two arcades bending around the macula, two nasal vessels and four branches
    beading = _col(grade >= 3)
    vessels = np.zeros(u.shape, dtype=f32)
    arcade = {}
    for k, sgn in enumerate((-1.0, 1.0)):
        a = _col(sgn * (0.45 + 0.15 * P[:, 3 + k]))
        b = _col(-sgn * (0.18 + 0.08 * P[:, 5 + k]))
        arcade[sgn] = (a, b)
        wid = 0.022 * (1.0 + 0.45 * beading * (_tri(uc1 * 9.0 + P[:, 7 + k, None, None]) - 0.5))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, xd, yd, a, b, -1.0, 1.35, wid))
        a_n = _col(sgn * (0.30 + 0.12 * P[:, 9 + k]))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, xd, yd, a_n, _col(sgn * 0.1), 1.0, 0.6, f32(0.016)))
    for k in range(4):
        # branches leave an arcade and run temporally, away from the horizontal raphe
        sgn = -1.0 if k % 2 == 0 else 1.0
        a, b = arcade[sgn]
        t0 = _col(0.15 + 0.6 * P[:, 11 + k])
        x0, y0 = xd - t0, yd + a * np.sqrt(t0) + b * t0
        a_b = _col(sgn * (0.15 + 0.2 * P[:, 15 + k]))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, x0, y0, a_b, _col(sgn * 0.05), -1.0, 0.5, f32(0.012)))
    vessels *= 1.0 - disc * 0.5

    # lesions as soft dots (pixel coordinates), each kind in its own layer
    half = S / 2.0

    def slots_xy(first, count, n_slots, centre_x, centre_y, spread):
        k = np.arange(n_slots)
        on = k[None, :] < count[:, None]
        ang_u = U[:, first : first + n_slots]
        rad_u = U[:, first + n_slots : first + 2 * n_slots]
        # a point in a square around the centre, pulled toward it (no trig needed)
        px = centre_x[:, None] + spread * (2 * ang_u - 1) * (0.35 + 0.65 * rad_u)
        py = centre_y[:, None] + spread * (2 * rad_u - 1) * (0.35 + 0.65 * ang_u)
        b, j = np.nonzero(on)
        x_img = px[b, j] * np.where(right[b] > 0, 1.0, -1.0) * zoom[b] + dx[b]
        y_img = py[b, j] * zoom[b] + dy[b]
        return b, (y_img + 1.0) * half, (x_img + 1.0) * half, j

    cx_pole = (xd[:, 0, 0] + xm[:, 0, 0]) / 2.0
    cy_pole = ym[:, 0, 0]
    b, cy, cx, _ = slots_xy(8, counts[:, 0], _N_MA, cx_pole, cy_pole, 0.65)
    sig = np.full(len(b), max(0.5, 0.012 * half))
    red = _splat((B, S, S), b, cy, cx, sig, 0.9 * contrast[b])
    b, cy, cx, j = slots_xy(8 + 2 * _N_MA, counts[:, 1], _N_HEM, cx_pole, cy_pole, 0.7)
    size = U[b, 8 + 2 * _N_MA + 2 * _N_HEM + j]
    red += _splat((B, S, S), b, cy, cx, np.maximum(0.6, (0.015 + 0.02 * size) * half), 0.85 * contrast[b])
    base = 8 + 2 * _N_MA + 3 * _N_HEM
    b, cy, cx, _ = slots_xy(base, counts[:, 2], _N_EX, xm[:, 0, 0] + 0.1, ym[:, 0, 0], 0.35)
    yellow = _splat((B, S, S), b, cy, cx, np.full(len(b), max(0.5, 0.014 * half)), 0.9 * contrast[b])
    base += 2 * _N_EX
    b, cy, cx, _ = slots_xy(base, counts[:, 3], _N_CWS, cx_pole, cy_pole, 0.6)
    white = _splat((B, S, S), b, cy, cx, np.full(len(b), max(0.8, 0.04 * half)), 0.6 * contrast[b])
    base += 2 * _N_CWS
    neo_slots = base
    base += 4
    b, cy, cx, _ = slots_xy(base, counts[:, 4], _N_DRUSEN, xm[:, 0, 0], ym[:, 0, 0], 0.45)
    yellow += _splat((B, S, S), b, cy, cx, np.full(len(b), max(0.5, 0.016 * half)), np.full(len(b), 0.45))
    base += 2 * _N_DRUSEN
    b, cy, cx, _ = slots_xy(base, counts[:, 5], _N_DUST, np.zeros(B), np.zeros(B), 0.7)
    dust = _splat((B, S, S), b, cy, cx, np.full(len(b), max(0.8, 0.035 * half)), np.full(len(b), 0.45))

    # neovascularisation: a tangle of fine vessels on or near the disc (grade 4)
    idx = np.flatnonzero(grade >= 4)
    if len(idx):
        r = U[idx, neo_slots : neo_slots + 4]
        nx = xd[idx] - _col(0.1 + 0.25 * r[:, 0])
        ny = yd[idx] + _col(0.3 * (2 * r[:, 1] - 1))
        ui, vi = uc[idx], v[idx]
        mesh = np.minimum(_tri(ui * 14.0 + vi * 9.0 + _col(r[:, 2])), _tri(ui * 8.0 - vi * 15.0 + _col(r[:, 3])))
        tangle = _ramp(0.3 - mesh, 0.2) * _ellipse(ui, vi, nx, ny, f32(0.14), f32(0.14), 0.04)
        vessels[idx] = np.maximum(vessels[idx], tangle * _col(contrast[idx]))

    # colour: pigment, vignetting, choroidal texture, structures, lesions
    pig = _col(P[:, 23])
    # exposure varies a lot between photographs (EyePACS has many dark, blurry images)
    light = _col(0.65 + 0.5 * U[:, 3]) * (1.0 - 0.35 * r2) * (1.0 + 0.05 * tex) * (1.0 - 0.35 * np.minimum(dust, 1.0))
    base_rgb = ((0.78 + 0.12 * pig), (0.30 + 0.12 * pig), (0.10 + 0.06 * pig))
    out = np.empty((B, 3, S, S), dtype=f32)
    red_l, yel_l, wht_l = np.minimum(red, 1.0), np.minimum(yellow, 1.0), np.minimum(white, 1.0)
    for c, (vessel_k, disc_k, cup_k, mac_k, red_k, yel_k, wht_k) in enumerate(
        (
            (0.30, 0.15, 0.05, 0.20, 0.35, 0.20, 0.12),
            (0.55, 0.40, 0.15, 0.35, 0.70, 0.45, 0.35),
            (0.45, 0.35, 0.20, 0.30, 0.60, 0.00, 0.35),
        )
    ):
        ch = base_rgb[c] * light * (1.0 - mac_k * macula) + disc_k * disc + cup_k * cup
        ch = ch * (1.0 - vessel_k * vessels) * (1.0 - red_k * red_l) + yel_k * yel_l + wht_k * wht_l
        out[:, c] = ch * field
    blur_px = (0.004 + 0.022 * U[:, 4] * U[:, 4]) * half
    flat = _blur(out.reshape(B * 3, S, S), np.repeat(blur_px, 3))
    out = flat.reshape(B, 3, S, S) + noise[:, None] * _col(0.01 + 0.025 * U[:, 5])[:, None]
    return np.clip(np.floor(out * 255.0 + 0.5), 0, 255).astype(np.uint8)
