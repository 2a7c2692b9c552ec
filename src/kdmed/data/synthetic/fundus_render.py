"""Rendering of the synthetic fundus photographs: disc, macula, vessel tree, DR lesions and their confounders.

:func:`render_fundus` turns per-image metadata (grade, lesion counts, lesion
contrast, eye, the patient's anatomy and texture, the image's own random numbers)
into uint8 RGB images; :class:`~kdmed.data.synthetic.fundus.SyntheticFundus` draws
that metadata.
"""

from __future__ import annotations

import numpy as np

from kdmed.data.synthetic.draw import blur, bump, col, ellipse, ramp, splat, tri, upsample

FUNDUS_UNIFORMS = 256  # per-image uniforms the renderer reads
# lesion slots per image (a slot is drawn when its index is below the image's count)
N_MA, N_HEM, N_EX, N_CWS, N_DRUSEN, N_DUST = 24, 12, 16, 3, 10, 3


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
    amp = (ramp(length - t, 0.1) * ramp(t - 0.02, 0.04)).astype(np.float32)
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
    u1 = (grid[None, None, :] - col(dx)) / col(zoom)  # per column [B, 1, W]
    v1 = (grid[None, :, None] - col(dy)) / col(zoom)  # per row [B, H, 1]
    mirror = col(np.where(right > 0, 1.0, -1.0))
    uc1 = u1 * mirror  # canonical view: optic disc on the right
    u, v = np.broadcast_arrays(u1, v1)
    uc = np.broadcast_to(uc1, u.shape)

    gscale = (texture.shape[-1] - 1) / 2.4
    (tex,) = upsample(
        texture,
        (grid[None, :] - dx[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
        (grid[None, :] - dy[:, None]) / zoom[:, None] * gscale + 1.2 * gscale,
    )
    r2 = u * u + v * v
    field = ramp(0.93 - np.sqrt(r2), 0.03)

    xd, yd = col(0.40 + 0.06 * P[:, 0]), col(0.06 * (2 * P[:, 1] - 1))
    rd = col(0.10 + 0.025 * P[:, 2])
    disc = ellipse(uc, v, xd, yd, rd * 0.9, rd, 0.02)
    cup = bump(uc, v, xd, yd, rd * 0.5, rd * 0.55)
    xm, ym = xd - 0.85, yd + 0.05
    macula = bump(uc, v, xm, ym, f32(0.2), f32(0.2))

    # vessel tree: two arcades bending around the macula, two nasal vessels and four branches
    beading = col(grade >= 3)
    vessels = np.zeros(u.shape, dtype=f32)
    arcade = {}
    for k, sgn in enumerate((-1.0, 1.0)):
        a = col(sgn * (0.45 + 0.15 * P[:, 3 + k]))
        b = col(-sgn * (0.18 + 0.08 * P[:, 5 + k]))
        arcade[sgn] = (a, b)
        wid = 0.022 * (1.0 + 0.45 * beading * (tri(uc1 * 9.0 + P[:, 7 + k, None, None]) - 0.5))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, xd, yd, a, b, -1.0, 1.35, wid))
        a_n = col(sgn * (0.30 + 0.12 * P[:, 9 + k]))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, xd, yd, a_n, col(sgn * 0.1), 1.0, 0.6, f32(0.016)))
    for k in range(4):
        # branches leave an arcade and run temporally, away from the horizontal raphe
        sgn = -1.0 if k % 2 == 0 else 1.0
        a, b = arcade[sgn]
        t0 = col(0.15 + 0.6 * P[:, 11 + k])
        x0, y0 = xd - t0, yd + a * np.sqrt(t0) + b * t0
        a_b = col(sgn * (0.15 + 0.2 * P[:, 15 + k]))
        vessels = np.maximum(vessels, _curve_vessel(uc1, v1, x0, y0, a_b, col(sgn * 0.05), -1.0, 0.5, f32(0.012)))
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
    b, cy, cx, _ = slots_xy(8, counts[:, 0], N_MA, cx_pole, cy_pole, 0.65)
    sig = np.full(len(b), max(0.5, 0.012 * half))
    red = splat((B, S, S), b, cy, cx, sig, 0.9 * contrast[b])
    b, cy, cx, j = slots_xy(8 + 2 * N_MA, counts[:, 1], N_HEM, cx_pole, cy_pole, 0.7)
    size = U[b, 8 + 2 * N_MA + 2 * N_HEM + j]
    red += splat((B, S, S), b, cy, cx, np.maximum(0.6, (0.015 + 0.02 * size) * half), 0.85 * contrast[b])
    base = 8 + 2 * N_MA + 3 * N_HEM
    b, cy, cx, _ = slots_xy(base, counts[:, 2], N_EX, xm[:, 0, 0] + 0.1, ym[:, 0, 0], 0.35)
    yellow = splat((B, S, S), b, cy, cx, np.full(len(b), max(0.5, 0.014 * half)), 0.9 * contrast[b])
    base += 2 * N_EX
    b, cy, cx, _ = slots_xy(base, counts[:, 3], N_CWS, cx_pole, cy_pole, 0.6)
    white = splat((B, S, S), b, cy, cx, np.full(len(b), max(0.8, 0.04 * half)), 0.6 * contrast[b])
    base += 2 * N_CWS
    neo_slots = base
    base += 4
    b, cy, cx, _ = slots_xy(base, counts[:, 4], N_DRUSEN, xm[:, 0, 0], ym[:, 0, 0], 0.45)
    yellow += splat((B, S, S), b, cy, cx, np.full(len(b), max(0.5, 0.016 * half)), np.full(len(b), 0.45))
    base += 2 * N_DRUSEN
    b, cy, cx, _ = slots_xy(base, counts[:, 5], N_DUST, np.zeros(B), np.zeros(B), 0.7)
    dust = splat((B, S, S), b, cy, cx, np.full(len(b), max(0.8, 0.035 * half)), np.full(len(b), 0.45))

    # neovascularisation: a tangle of fine vessels on or near the disc (grade 4)
    idx = np.flatnonzero(grade >= 4)
    if len(idx):
        r = U[idx, neo_slots : neo_slots + 4]
        nx = xd[idx] - col(0.1 + 0.25 * r[:, 0])
        ny = yd[idx] + col(0.3 * (2 * r[:, 1] - 1))
        ui, vi = uc[idx], v[idx]
        mesh = np.minimum(tri(ui * 14.0 + vi * 9.0 + col(r[:, 2])), tri(ui * 8.0 - vi * 15.0 + col(r[:, 3])))
        tangle = ramp(0.3 - mesh, 0.2) * ellipse(ui, vi, nx, ny, f32(0.14), f32(0.14), 0.04)
        vessels[idx] = np.maximum(vessels[idx], tangle * col(contrast[idx]))

    # colour: pigment, vignetting, choroidal texture, structures, lesions
    pig = col(P[:, 23])
    # exposure varies a lot between photographs (EyePACS has many dark, blurry images)
    light = col(0.65 + 0.5 * U[:, 3]) * (1.0 - 0.35 * r2) * (1.0 + 0.05 * tex) * (1.0 - 0.35 * np.minimum(dust, 1.0))
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
    flat = blur(out.reshape(B * 3, S, S), np.repeat(blur_px, 3))
    out = flat.reshape(B, 3, S, S) + noise[:, None] * col(0.01 + 0.025 * U[:, 5])[:, None]
    return np.clip(np.floor(out * 255.0 + 0.5), 0, 255).astype(np.uint8)
