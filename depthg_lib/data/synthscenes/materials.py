"""Appearance: procedural patterns of a `Look`, ground materials and the sky colour."""

from __future__ import annotations

import numpy as np

from .classes import GRASS, ROAD, SAND, WATER
from .scene import Ground, Look, Sky
from .shapes import F32, fbm, smoothstep, value_noise

_PATTERN_MEAN = {"plain": 0.12, "noise": 0.5, "stripes": 0.5, "checker": 0.5, "leaves": 0.5,
                 "windows": 0.25, "bricks": 0.2}


def _pattern(look: Look, x, y, z, nx, ny, nz, fp, table):
    """Mixing weight in [0, 1] of `look.color2`; fades to its mean when a pixel (footprint
    `fp` metres) is too coarse for the pattern, a cheap stand-in for mip-mapping."""
    s, kind, o = look.scale, look.pattern, look.offset
    if kind == "plain":
        v = 0.25 * value_noise(table, (x + z) / s * 0.5 + o, (y - z) / s * 0.5 + o)
    elif kind in ("noise", "leaves"):
        v = fbm(table, (x + 0.7 * z) / s + o, (y - 0.6 * z) / s - o)
        v = smoothstep(0.3, 0.7, v) if kind == "noise" else smoothstep(0.42, 0.58, v)
    elif kind == "stripes":
        a = look.axis
        w = (a[0] * x + a[1] * y + a[2] * z) / s + o
        v = smoothstep(-0.35, 0.35, np.sin(6.2831853 * w))
    elif kind == "checker":
        c, sn = look.axis[0], look.axis[1]
        u, w = (c * x + sn * y) / s + o, (-sn * x + c * y) / s
        v = ((np.floor(u) + np.floor(w) + np.floor(z / s)).astype(np.int32) & 1).astype(F32)
    elif kind in ("windows", "bricks"):
        u = -ny * x + nx * y  # horizontal coordinate along a vertical face
        wall = np.abs(nz) < 0.5
        if kind == "windows":
            fu, fz = (u / s + o) % 1.0, (z / (1.1 * s)) % 1.0
            v = ((fu > 0.28) & (fu < 0.72) & (fz > 0.3) & (fz < 0.78) & (z > 1.0) & wall)
        else:
            row = np.floor(z / s)
            fu = (u / (2.2 * s) + 0.5 * (row % 2.0) + o) % 1.0
            v = (((z / s) % 1.0 < 0.12) | (fu < 0.06)) & wall
        v = v.astype(F32)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    lod = np.clip(1.5 - 3.0 * fp / s, 0.0, 1.0)
    mean = _PATTERN_MEAN[kind]
    return mean + (v - mean) * lod


def look_albedo(look: Look, x, y, z, nx, ny, nz, fp, table):
    v = _pattern(look, x, y, z, nx, ny, nz, fp, table)
    grain_lod = np.clip(1.5 - 3.0 * fp / 0.15, 0.0, 1.0)
    grain = 1.0 + 0.16 * grain_lod * (value_noise(table, (x - z) * 6.7 + 31.0, (y + z) * 6.7) - 0.5)
    return tuple((c1 + (c2 - c1) * v) * grain for c1, c2 in zip(look.color, look.color2))


def ground_material(ground: Ground, x, y, table):
    """Class id (uint8) of the ground at (x, y), and the road coordinates for its markings."""
    mat = np.full(np.shape(x), GRASS, dtype=np.uint8)
    if ground.sand is not None:
        mat[ground.sand.rho(x, y, table) < 1.0] = SAND
    if ground.lake is not None:
        rho = ground.lake.rho(x, y, table)
        if ground.beach > 0:
            mat[rho < 1.0 + ground.beach] = SAND
        mat[rho < 1.0] = WATER
    lateral = np.full(np.shape(x), np.inf, dtype=F32)
    along = np.zeros(np.shape(x), dtype=F32)
    for road in ground.roads:
        lat, alo = road.coords(x, y)
        on = np.abs(lat) < 0.5 * road.width
        mat[on] = ROAD
        if road.marked:
            lateral = np.where(on, lat, lateral)
            along = np.where(on, alo, along)
    return mat, lateral, along


def ground_albedo(ground: Ground, mat, x, y, lateral, along, fp, table):
    out = np.empty((x.size, 3), F32)
    zero = np.zeros((), F32)
    looks = {GRASS: ground.grass, ROAD: ground.road_look, SAND: ground.sand_look,
             WATER: ground.water_look}
    for cls, look in looks.items():
        sel = np.flatnonzero(mat == cls)
        if sel.size == 0:
            continue
        xs, ys, f = x[sel], y[sel], fp[sel]
        # Large-scale colour variation between the two colours, fine pattern as brightness.
        low = smoothstep(0.25, 0.75, fbm(table, xs / 9.0 + look.offset, ys / 9.0))
        v = _pattern(look, xs, ys, zero, zero, zero, np.ones((), F32), f, table)
        bright = 0.78 + 0.44 * v
        rgb = [(c1 + (c2 - c1) * low) * bright for c1, c2 in zip(look.color, look.color2)]
        if cls == ROAD:
            lat, alo = lateral[sel], along[sel]
            half = np.float32(0.5) * np.float32(min(r.width for r in ground.roads))
            dash = (np.abs(lat) < 0.08) & ((alo / 3.0) % 1.0 < 0.5)
            edge = (np.abs(lat) > half - 0.3) & (np.abs(lat) < half - 0.15)
            # Thin lines fade with distance (coverage of a pixel), so they do not alias.
            a = np.where(dash | edge, np.clip(0.15 / np.maximum(f, 1e-3), 0.0, 0.85), 0.0)
            rgb = [c + (0.92 - c) * a for c in rgb]
        out[sel] = np.stack(rgb, axis=-1)
    return out.T


def sky_color(sky: Sky, dx, dy, dz, table):
    """Sky colour for unit ray directions: gradient, sun glow and a layer of clouds."""
    e = np.sqrt(np.clip(dz, 0.0, 1.0))
    col = [h + (zz - h) * e for h, zz in zip(sky.horizon, sky.zenith)]
    lx, ly, lz = sky.sun_dir
    cosang = dx * lx + dy * ly + dz * lz
    glow = 0.9 * np.exp((cosang - 1.0) * 400.0) + 0.25 * np.exp((cosang - 1.0) * 8.0)
    col = [c + s * glow for c, s in zip(col, sky.sun_color)]
    scale = 1.0 / np.maximum(dz, 0.02)  # intersection with a cloud layer, in layer heights
    n = fbm(table, dx * scale * 0.9 + 3.3, dy * scale * 0.9 - 7.1)
    cover = smoothstep(sky.clouds, sky.clouds + 0.22, n) * smoothstep(0.03, 0.25, dz)
    shade = 0.82 + 0.18 * smoothstep(0.3, 0.9, n)
    return [c + (0.97 * shade - c) * cover * 0.9 for c in col]
