"""Rendering of the synthetic chest X-rays: per-patient anatomy, one visual sign per finding, acquisition style.

:func:`render_chest` turns per-image metadata (anatomy, finding strengths, the
institution's style, the image's own random numbers and the patient's coarse
texture) into uint8 images; :class:`~kdmed.data.synthetic.chest.SyntheticChest`
draws that metadata. Each image's grey-level histogram is matched to its
institution's curve, so no global pixel statistic carries label information.
"""

from __future__ import annotations

import numpy as np

from kdmed.data.chexpert import CLASSES
from kdmed.data.synthetic.draw import (
    blur,
    bump,
    col,
    ellipse,
    grey_curve,
    match_histogram,
    qdist,
    ramp,
    segment,
    tri,
    upsample,
)

#: the classes drawn as a visual sign ("No Finding" is the absence of all pathology signs)
FINDINGS: tuple[str, ...] = tuple(CLASSES[1:])
CHEST_UNIFORMS = 96  # per-image uniforms: 8 global, 6 for each of the 13 findings, 2 for the shading
#: the per-patient anatomy parameters and the range each is drawn from
ANATOMY = (
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
ANATOMY_RANGES = {
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



def _devices(u, v, r, s) -> np.ndarray:
    """Support devices for the images that have them: ET tube, central line, ECG leads, pacemaker."""
    f32 = np.float32
    dev = np.zeros_like(u)
    wid = col(0.012 + 0.012 * s[:, 0, 0])
    et, leads, pm = r[:, 0] < 0.5, r[:, 2] < 0.5, r[:, 3] < 0.15
    cvc = (r[:, 1] < 0.6) | ~(et | leads | pm)  # every device image shows at least one device

    def put(mask, draw):
        j = np.flatnonzero(mask)
        if len(j):
            dev[j] = np.maximum(dev[j], draw(j, u[j], v[j]))

    put(et, lambda j, uj, vj: segment(uj, vj, f32(0.0), f32(-1.2), f32(0.0), col(-0.45 + 0.1 * r[j, 4]), wid[j]))

    def central_line(j, uj, vj):
        side = col(np.where(r[j, 5] < 0.5, -1.0, 1.0))
        tip = col(-0.2 + 0.15 * r[j, 4])
        return np.maximum(
            segment(uj, vj, 0.55 * side, f32(-0.78), 0.15 * side, f32(-0.6), wid[j]),
            segment(uj, vj, 0.15 * side, f32(-0.6), f32(0.05), tip, wid[j]),
        )

    put(cvc, central_line)

    def ecg_leads(j, uj, vj):
        out = np.zeros_like(uj)
        for lx, ly in ((-0.55, -0.55), (0.55, -0.5), (0.5, 0.35)):
            q = qdist(uj, vj, col(lx + 0.1 * (r[j, 4] - 0.5)), col(ly + 0.1 * (r[j, 5] - 0.5)), f32(0.05), f32(0.05))
            out = np.maximum(out, np.clip(1.0 - np.abs(q - 0.6) * 4.0, 0.0, 1.0))
        return out

    put(leads, ecg_leads)

    def pacemaker(j, uj, vj):
        box = ellipse(uj, vj, f32(0.5), f32(-0.62), f32(0.09), f32(0.06), 0.01)
        lead = np.maximum(
            segment(uj, vj, f32(0.45), f32(-0.62), f32(0.1), f32(-0.3), wid[j]),
            segment(uj, vj, f32(0.1), f32(-0.3), f32(0.02), f32(0.3), wid[j]),
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

    ``anatomy`` ``[B, len(ANATOMY)]`` (per patient), ``strength`` ``[B, 13]`` (per finding,
    0 = absent, scaled by :data:`VISIBILITY` here), ``style`` the institution,
    ``uniforms_and_noise`` the image's own random numbers, ``texture`` per-patient coarse noise.
    """
    U, noise = uniforms_and_noise
    S = image_size
    B = len(strength)
    A = {name: col(anatomy[:, j]) for j, name in enumerate(ANATOMY)}
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
    gx, gy = grid[None, None, :] - col(dx), grid[None, :, None] - col(dy)
    u = (gx * col(cos / zoom) + gy * col(sin / zoom)).astype(f32)
    v = (gy * col(cos / zoom) - gx * col(sin / zoom)).astype(f32)

    # texture lives in body coordinates (zoom and shift; the small rotation is ignored)
    gscale = (texture.shape[-1] - 1) / 2.4
    tex, tex2 = upsample(
        texture,
        (grid[None, :] - dx[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
        (grid[None, :] - dy[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
    )

    # ---- anatomy
    body = ellipse(u, v, 0.0, 0.12, A["body_width"], f32(1.12), 0.04)
    lung_cy = (A["lung_top"] + A["diaphragm"]) * 0.5
    lung_ry = (A["diaphragm"] - A["lung_top"]) * 0.5 + 0.08
    dia = {-1: A["diaphragm"] - A["dome_asymmetry"], 1: A["diaphragm"]}
    # atelectasis pulls the hemidiaphragm of its side up (volume loss)
    atel_side = np.where(uu(8 + 6 * FINDINGS.index("Atelectasis")) < 0.5, -1, 1)
    atel_lift = col(0.06 * st["Atelectasis"])
    lungs = {}
    for side in (-1, 1):
        cx = A["lung_offset"] * side
        d = dia[side] - atel_lift * col(atel_side == side)
        a = (u - cx) / A["lung_width"]
        dome = d - 0.08 + 0.22 * a * a
        lungs[side] = ellipse(u, v, cx, lung_cy, A["lung_width"], lung_ry, 0.03) * ramp(dome - v, 0.04) * body
    cm = col(st["Cardiomegaly"])
    # the heart sits on the left hemidiaphragm; heart_y is its height above the dome
    heart = ellipse(
        u, v, A["heart_x"] + 0.1 * cm, A["diaphragm"] - A["heart_y"] - 0.05 * cm,
        A["heart_width"] * (1 + 0.35 * cm), A["heart_height"] * (1 + 0.12 * cm), 0.03,
    )
    ecm = col(st["Enlarged Cardiomediastinum"])
    med_w = A["mediastinum_width"] * (1 + 0.8 * ecm * ramp(0.0 - v, 0.5))
    med = ramp(med_w - np.abs(u - 0.01), 0.03) * ramp(v + 0.95, 0.05) * ramp(0.35 - v, 0.1)
    soft = np.maximum(heart, med)
    lung = (lungs[-1] + lungs[1]) * (1.0 - soft)
    spine = ramp(0.06 - np.abs(u), 0.02)
    trachea = ramp(0.035 - np.abs(u - 0.005), 0.02) * ramp(-0.42 - v, 0.06) * body
    w = (v - A["rib_curve"] * u * u) / A["rib_period"] + A["rib_phase"]
    rib_wave = np.abs(w - np.floor(w) - 0.5) * 2.0
    ribs = ramp(rib_wave - 0.62, 0.25) * ramp(np.abs(u) - 0.08, 0.04) * ramp(A["diaphragm"] + 0.1 - v, 0.1)
    # ribs stand out over the air-filled lungs, much less over soft tissue
    ribs *= 0.3 * body + 0.7 * np.minimum(lungs[-1] + lungs[1], 1.0)
    au = np.abs(u)
    clav = ramp(0.045 - np.abs(v + 0.78 + 0.25 * (au - 0.08)), 0.03) * ramp(au - 0.08, 0.03) * ramp(0.55 - au, 0.05)
    hila = bump(u, v, -0.2, -0.05, 0.35, 0.45) + bump(u, v, 0.2, -0.05, 0.35, 0.45)
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
        return side, col(x), col(y)

    # ---- findings (each on the sub-batch that has it)
    idx = sub("Lung Opacity")
    if len(idx):
        r, s = slots("Lung Opacity", idx), col(st["Lung Opacity"][idx])
        ui, vi = u[idx], v[idx]
        acc = np.zeros_like(ui)
        for k in range(2):
            _, x, y = lung_point(idx, np.roll(r, 2 * k, axis=1), 0.25, 0.95)
            rad = col(0.14 + 0.08 * r[:, 3 + k])
            acc += bump(ui, vi, x, y, rad, rad * 1.2) * col(r[:, 5] > 0.5 * k)
        D[idx] += 0.16 * s * acc * (0.7 + 0.3 * tex2[idx]) * lung[idx]
    idx = sub("Lung Lesion")
    if len(idx):
        r, s = slots("Lung Lesion", idx), col(st["Lung Lesion"][idx])
        _, x, y = lung_point(idx, r, 0.1, 0.85)
        rad = col(0.045 + 0.04 * r[:, 3])
        D[idx] += 0.3 * s * ellipse(u[idx], v[idx], x, y, rad, rad, 0.012)
    idx = sub("Edema")
    if len(idx):
        s = col(st["Edema"][idx])
        haze = bump(u[idx], v[idx], -0.22, 0.0, 0.42, 0.55) + bump(u[idx], v[idx], 0.22, 0.0, 0.42, 0.55)
        D[idx] += 0.16 * s * haze * (0.85 + 0.15 * tex[idx]) * lung[idx]
    idx = sub("Consolidation")
    if len(idx):
        r, s = slots("Consolidation", idx), col(st["Consolidation"][idx])
        _, x, _ = lung_point(idx, r, 0.0, 1.0)
        y = col(A["diaphragm"][idx, 0, 0] - 0.18 - 0.1 * r[:, 2])
        rad = col(0.18 + 0.1 * r[:, 3])
        fissure = col(A["diaphragm"][idx, 0, 0] - 0.35 - 0.15 * r[:, 4])
        reg = ellipse(u[idx], v[idx], x, y, rad * 1.2, rad, 0.05) * ramp(v[idx] - fissure, 0.03)
        D[idx] += 0.28 * s * reg * lung[idx]
    idx = sub("Pneumonia")
    if len(idx):
        r, s = slots("Pneumonia", idx), col(st["Pneumonia"][idx])
        _, x, y = lung_point(idx, r, 0.35, 0.85)
        ui, vi = u[idx], v[idx]
        rad = col(0.12 + 0.06 * r[:, 3])
        patch = ellipse(ui, vi, x, y, rad, rad * 1.1, 0.06)
        # air bronchograms: dark branching stripes inside the dense patch
        stripes = ramp(0.3 - tri((ui - x) * 7.0 + (vi - y) * 3.0 * col(2 * r[:, 4] - 1) + col(r[:, 5])), 0.15)
        D[idx] += 0.3 * s * patch * (1.0 - 0.55 * stripes) * lung[idx]
    idx = sub("Atelectasis")
    if len(idx):
        r, s = slots("Atelectasis", idx), col(st["Atelectasis"][idx])
        side = atel_side[idx].astype(float)
        x = side * A["lung_offset"][idx, 0, 0] + 0.1 * (2 * r[:, 1] - 1)
        y = A["diaphragm"][idx, 0, 0] - 0.2 - 0.15 * r[:, 2]
        half, tilt = 0.12 + 0.08 * r[:, 3], 0.25 * (2 * r[:, 4] - 1)
        band = segment(u[idx], v[idx], col(x - half), col(y - tilt * half), col(x + half), col(y + tilt * half), 0.04)
        D[idx] += 0.3 * s * band * lung[idx]
    idx = sub("Pneumothorax")
    if len(idx):
        r, s = slots("Pneumothorax", idx), st["Pneumothorax"][idx]
        side = np.where(r[:, 0] < 0.5, -1, 1)
        ui, vi = u[idx], v[idx]
        lk = np.where(col(side < 0), lungs[-1][idx], lungs[1][idx]) * (1.0 - soft[idx])
        f = col(1.0 - 0.35 * s)
        cx = col(side * (A["lung_offset"][idx, 0, 0] - 0.2 * A["lung_width"][idx, 0, 0] * (1 - f[:, 0, 0])))
        cy = lung_cy[idx] + 0.25 * lung_ry[idx] * (1 - f)
        q = qdist(ui, vi, cx, cy, A["lung_width"][idx] * f, lung_ry[idx] * f)
        gas = lk * ramp(q - 1.0, 0.08)
        line = lk * np.clip(1.0 - np.abs(q - 1.0) * 12.0, 0.0, 1.0)
        D[idx] += gas * (-markings[idx] - 0.05 * col(s)) + 0.12 * col(np.sqrt(s)) * line
    idx = sub("Pleural Effusion")
    if len(idx):
        r, s = slots("Pleural Effusion", idx), col(st["Pleural Effusion"][idx])
        h = 0.06 + 0.35 * s
        sides = np.where(r[:, 0] < 0.35, -1, np.where(r[:, 0] < 0.7, 1, 0))  # 0 = both sides
        ui, vi = u[idx], v[idx]
        for side in (-1, 1):
            on = col((sides == side) | (sides == 0))
            cx = A["lung_offset"][idx] * side
            lat = np.clip(side * (ui - cx) / A["lung_width"][idx] + 0.3, 0.0, 1.3)
            level = dia[side][idx] - 0.08 - h * (1.0 + 0.7 * lat)
            fluid = lungs[side][idx] * (1.0 - soft[idx]) * ramp(vi - level, 0.03)
            D[idx] += 0.42 * on * fluid
    idx = sub("Pleural Other")
    if len(idx):
        r, s = slots("Pleural Other", idx), col(st["Pleural Other"][idx])
        side = np.where(r[:, 0] < 0.5, -1.0, 1.0)
        ui, vi = u[idx], v[idx]
        cx = col(side) * A["lung_offset"][idx]
        q = qdist(ui, vi, cx, lung_cy[idx], A["lung_width"][idx], lung_ry[idx])
        lateral = ramp(col(side) * (ui - cx) - 0.05, 0.1)
        y0 = col(A["lung_top"][idx, 0, 0] + 0.3 + 0.5 * r[:, 2])
        extent = ramp(0.3 - np.abs(vi - y0), 0.1)
        band = np.clip(1.0 - np.abs(q - 0.88) * (6.0 / (0.5 + 0.5 * np.minimum(s, 1.5))), 0.0, 1.0)
        # pleural plaques: thickening along the wall plus en-face plaques over the lung
        # (elongated, denser than soft tissue where calcified)
        plaques = np.zeros_like(ui)
        for k in range(2):
            _, px, py = lung_point(idx, np.roll(r, 3 * k, axis=1), 0.3, 0.9)
            plaques = np.maximum(plaques, ellipse(ui, vi, px, py, f32(0.035), f32(0.075), 0.015))
        D[idx] += 0.4 * s * (band * lateral * extent + plaques * lung[idx])
    idx = sub("Fracture")
    if len(idx):
        r, s = slots("Fracture", idx), col(st["Fracture"][idx])
        side = np.where(r[:, 0] < 0.5, -1.0, 1.0)
        ui, vi = u[idx], v[idx]
        x = col(side * (A["lung_offset"][idx, 0, 0] + (0.2 + 0.3 * r[:, 1]) * A["lung_width"][idx, 0, 0]))
        y = col(A["lung_top"][idx, 0, 0] + 0.2 + 0.6 * r[:, 2])
        wi = (vi - A["rib_curve"][idx] * ui * ui) / A["rib_period"][idx] + A["rib_phase"][idx] + 0.5 * np.minimum(s, 1.0)
        shifted = ramp(np.abs(wi - np.floor(wi) - 0.5) * 2.0 - 0.62, 0.25)
        shifted *= 0.3 * body[idx] + 0.7 * np.minimum(lungs[-1][idx] + lungs[1][idx], 1.0)
        # the rib is displaced lateral to the break, with a small callus on it
        m = ellipse(ui, vi, x, y, f32(0.13), f32(0.1), 0.03) * ramp(col(side) * (ui - x), 0.03)
        D[idx] += 0.07 * (shifted - ribs[idx]) * m + 0.1 * s * bump(ui, vi, x, y, 0.07, 0.06)
    idx = sub("Support Devices")
    if len(idx):
        r, s = slots("Support Devices", idx), col(st["Support Devices"][idx])
        dev = _devices(u[idx], v[idx], r, s)
        D[idx] += 0.45 * dev

    # ---- acquisition: blur, noise, then the institution's grey-level curve
    blur_px = style.blur * (0.6 + 0.8 * uu(4)) * (S / 2.0)
    D = blur(D, blur_px)
    # a faint label-free shading (heel effect, scatter) leaves no exactly flat region, so every
    # image gets exactly its curve's histogram and no global statistic depends on the content
    D += f32(2e-3) * (col(2 * uu(86) - 1) * gx + col(2 * uu(87) - 1) * gy + f32(0.3) * tex)
    curve = grey_curve(
        S * S,
        style.darkness * (0.8 + 0.4 * uu(6)),
        np.clip(style.contrast + 0.15 * (2 * uu(7) - 1), 0.0, 1.0),
        np.full(B, style.black),
        np.full(B, style.white),
    )
    grey = match_histogram(D.reshape(B, S * S), curve).reshape(B, S, S)
    # detector noise is added after the grey-level curve, so it is label-free by construction
    grey += noise * col(style.noise * (0.7 + 0.6 * uu(5)))
    return np.clip(np.floor(grey + 0.5), 0, 255).astype(np.uint8).reshape(B, 1, S, S)
