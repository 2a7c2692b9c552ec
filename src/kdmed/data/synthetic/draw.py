"""Drawing primitives of the synthetic images: soft shapes, blur, texture, dots and grey-level histogram matching.

Every function works on whole batches (``[B, H, W]`` float32 arrays, per-image
parameters as ``[B, 1, 1]``) and uses only correctly rounded float operations (no
exp/sin/pow), so pixels do not depend on the CPU's SIMD paths; sums go through
``np.bincount``, which adds in input order, so no value depends on the batch.
"""

from __future__ import annotations

import math

import numpy as np


def ramp(x, width):
    """Soft step: 0 below ``-width/2``, 1 above ``width/2``, linear between."""
    return np.clip(x * (1.0 / width) + 0.5, 0.0, 1.0)


def qdist(u, v, cx, cy, rx, ry):
    """Squared normalised radius of (u, v) in the ellipse centred at (cx, cy)."""
    a = (u - cx) / rx
    b = (v - cy) / ry
    return a * a + b * b


def ellipse(u, v, cx, cy, rx, ry, edge):
    """Soft-edged filled ellipse (edge width ``edge`` in half-widths)."""
    q = qdist(u, v, cx, cy, rx, ry)
    # near the rim, distance to the border is about r (1 - q) / 2
    return np.clip((1.0 - q) * ((rx + ry) * 0.25 / edge) + 0.5, 0.0, 1.0)


def bump(u, v, cx, cy, rx, ry):
    """Smooth blob ``(1 - q)^2`` inside the ellipse, 0 outside (a Gaussian without exp)."""
    w = np.clip(1.0 - qdist(u, v, cx, cy, rx, ry), 0.0, None)
    return w * w


def segment(u, v, x0, y0, x1, y1, width):
    """Soft line segment of half-width ``width``."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    ex = u - x0 - t * dx
    ey = v - y0 - t * dy
    return np.clip(1.0 - (ex * ex + ey * ey) / (width * width), 0.0, 1.0)


def tri(x):
    """Triangle wave with period 1, values in [0, 1] (a sine without sin)."""
    return np.abs(x - np.floor(x) - 0.5) * 2.0


def col(a):
    """Per-image scalars ``[B]`` as ``[B, 1, 1]`` float32 for broadcasting over pixels."""
    return np.asarray(a, dtype=np.float32).reshape(-1, 1, 1)


def blur(img: np.ndarray, sigma_px: np.ndarray) -> np.ndarray:
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


def upsample(coarse: np.ndarray, fu: np.ndarray, fv: np.ndarray) -> list[np.ndarray]:
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


def splat(shape, b, cy, cx, sigma_px, amp) -> np.ndarray:
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


def match_histogram(density: np.ndarray, curve: np.ndarray) -> np.ndarray:
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


def grey_curve(p: int, darkness, contrast, black, white) -> np.ndarray:
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

