"""Ray casting a `Layout` into image, label, depth and instances (docs/method.md §1)."""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .classes import FAR_DEPTH, SKY, WATER
from .materials import ground_albedo, ground_material, look_albedo, sky_color
from .scene import Layout, Scene, SceneObject
from .shapes import F32, INF, noise_table, smoothstep, value_noise


def _screen_box(lo, hi, h, cp, sp, f, H, W):
    """Pixel rows/cols (r0, r1, c0, c1) that a world box can cover (whole image if behind)."""
    cols, rows = [], []
    for y in (lo[1], hi[1]):
        for z in (lo[2] - h, hi[2] - h):
            fwd = y * cp + z * sp
            if fwd < 0.05:  # a corner behind (or at) the camera: no useful bound
                return 0, H, 0, W
            rows.append((y * sp - z * cp) / fwd * f)
            cols += [lo[0] / fwd * f, hi[0] / fwd * f]
    c0 = max(0, math.floor(min(cols) + W / 2 - 0.5) - 1)
    c1 = min(W, math.ceil(max(cols) + W / 2 - 0.5) + 2)
    r0 = max(0, math.floor(min(rows) + H / 2 - 0.5) - 1)
    r1 = min(H, math.ceil(max(rows) + H / 2 - 0.5) + 2)
    return r0, r1, c0, c1


def _bounding_sphere(obj: SceneObject):
    los, his = zip(*(shape.bounds() for shape, _ in obj.parts))
    lo, hi = [min(v) for v in zip(*los)], [max(v) for v in zip(*his)]
    center = tuple(0.5 * (a + b) for a, b in zip(lo, hi))
    return center, 0.5 * math.dist(lo, hi)


# One ray per pixel from (0, 0, h): d = forward + x · right − y · up, forward = (0, cos p, sin p),
# up = (0, −sin p, cos p), so a hit's parameter t is its depth; f is the focal length in pixels.
_Rays = namedtuple("_Rays", "H W h cp sp f dx dy dz")
# The rays that hit a surface: flat pixel indices, t, direction, point, ray length.
_Hits = namedtuple("_Hits", "idx t rdx rdy rdz px py pz ray_len")


def _rays(cam, size: int | tuple[int, int]) -> _Rays:
    H, W = (int(s) for s in np.broadcast_to(size, 2))  # an int is a square
    h = float(cam.height)
    pitch = math.radians(cam.pitch)
    cp, sp = math.cos(pitch), math.sin(pitch)
    f = (W / 2) / math.tan(math.radians(cam.fov) / 2)
    xs = ((np.arange(W, dtype=F32) + 0.5 - W / 2) / f)[None, :]
    ys = ((np.arange(H, dtype=F32) + 0.5 - H / 2) / f)[:, None]
    dx = np.broadcast_to(xs, (H, W)).copy()
    dy = np.broadcast_to(cp + ys * sp, (H, W)).copy()
    dz = np.broadcast_to(sp - ys * cp, (H, W)).copy()
    return _Rays(H, W, h, cp, sp, f, dx, dy, dz)


def _cast(r: _Rays, parts: list) -> tuple[np.ndarray, np.ndarray]:
    """Nearest t of every pixel's ray (ground plane or a part; inf for none) and which part it
    hit (-1 = ground), each part tested only inside its screen box."""
    with np.errstate(divide="ignore"):
        tbest = np.where(r.dz < 0, -r.h / r.dz, INF).astype(F32)
    part_id = np.full((r.H, r.W), -1, dtype=np.int16)  # -1 = ground
    for k, (_, shape, _) in enumerate(parts):
        r0, r1, c0, c1 = _screen_box(*shape.bounds(), r.h, r.cp, r.sp, r.f, r.H, r.W)
        if r0 >= r1 or c0 >= c1:
            continue
        win = (slice(r0, r1), slice(c0, c1))
        t = shape.intersect(0.0, 0.0, r.h, r.dx[win], r.dy[win], r.dz[win])
        closer = t < tbest[win]
        tbest[win][closer] = t[closer]
        part_id[win][closer] = k
    return tbest, part_id


def _hits(r: _Rays, tbest: np.ndarray, idx: np.ndarray) -> _Hits:
    t = tbest.ravel()[idx]
    rdx, rdy, rdz = r.dx.ravel()[idx], r.dy.ravel()[idx], r.dz.ravel()[idx]
    ray_len = np.sqrt(rdx * rdx + rdy * rdy + rdz * rdz)
    return _Hits(idx, t, rdx, rdy, rdz, rdx * t, rdy * t, r.h + rdz * t, ray_len)


def _surfaces(layout: Layout, parts: list, hits: _Hits, ids: np.ndarray, f: float, table):
    """Per hit: normal, albedo, class, instance and whether it is water, one surface at a time."""
    n = hits.idx.size
    normal = [np.zeros(n, F32), np.zeros(n, F32), np.ones(n, F32)]
    alb = np.empty((n, 3), F32)
    lab, inst = np.empty(n, np.uint8), np.zeros(n, np.uint16)
    water = np.zeros(n, bool)
    order = np.argsort(ids, kind="stable")
    uniq, starts = np.unique(ids[order], return_index=True)
    ends = np.append(starts[1:], n)
    for k, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
        sel = order[a:b]
        x, y, z = hits.px[sel], hits.py[sel], hits.pz[sel]
        if k >= 0:  # a part; the ground keeps the normal (0, 0, 1)
            oi, shape, look = parts[k]
            normal[0][sel], normal[1][sel], normal[2][sel] = shape.normal(x, y, z)
        nx, ny, nz = normal[0][sel], normal[1][sel], normal[2][sel]
        cos_in = np.abs(nx * hits.rdx[sel] + ny * hits.rdy[sel] + nz * hits.rdz[sel]
                        ) / hits.ray_len[sel]
        # the pixel's size on the surface, with the cosine of incidence floored at 0.2
        fp = hits.t[sel] * hits.ray_len[sel] / f / np.maximum(cos_in, 0.2)
        if k == -1:
            mat, lat, alo = ground_material(layout.ground, x, y, table)
            c = ground_albedo(layout.ground, mat, x, y, lat, alo, fp, table)
            lab[sel] = mat
            water[sel] = mat == WATER
        else:
            c = look_albedo(look, x, y, z, nx, ny, nz, fp, table)
            lab[sel] = layout.objects[oi].class_id
            inst[sel] = layout.objects[oi].instance
        alb[sel] = np.stack(c, axis=-1)
    return normal, alb.T, lab, inst, water


def _sunlight(layout: Layout, hits: _Hits, normal: list) -> np.ndarray:
    """Lambertian sun per hit, 0 in cast shadow (tested against the objects whose bounding
    sphere the shadow ray passes)."""
    nx, ny, nz = normal
    lx, ly, lz = (F32(v) for v in layout.sky.sun_dir)
    ndl = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
    lit = np.flatnonzero(ndl > 0)
    off = 2e-3 + 2e-5 * hits.t[lit]
    ox = hits.px[lit] + nx[lit] * off
    oy = hits.py[lit] + ny[lit] * off
    oz = hits.pz[lit] + nz[lit] * off
    visible = np.ones(lit.size, bool)
    for obj in layout.objects:
        (cx, cy, cz), rad = _bounding_sphere(obj)
        wx, wy, wz = cx - ox, cy - oy, cz - oz
        along = wx * lx + wy * ly + wz * lz
        cand = np.flatnonzero((along > -rad) & (wx * wx + wy * wy + wz * wz - along * along
                                                < rad * rad) & visible)
        if cand.size == 0:
            continue
        blocked = np.zeros(cand.size, bool)
        for shape, _ in obj.parts:
            blocked |= shape.intersect(ox[cand], oy[cand], oz[cand], lx, ly, lz) < INF
        visible[cand[blocked]] = False
    sun = np.zeros(hits.idx.size, F32)
    sun[lit] = ndl[lit] * visible
    return sun


def _shade(sky, hits: _Hits, normal: list, alb: list, water: np.ndarray, sun: np.ndarray,
           table) -> list[np.ndarray]:
    """Colour of every hit: sun and sky ambient, the sky mirrored on water, then aerial
    perspective (far surfaces fade into the horizon colour, fully at the far plane)."""
    hemi = 0.6 + 0.4 * normal[2]
    amb = [sky.ambient * (0.5 * (hz + zz)) for hz, zz in zip(sky.horizon, sky.zenith)]
    col = [a * (am * hemi + sc * sun) for a, am, sc in zip(alb, amb, sky.sun_color)]
    if water.any():  # water mirrors the sky, more so at grazing angles (Fresnel-like)
        w = np.flatnonzero(water)
        inv = 1.0 / hits.ray_len[w]
        ripple = 0.06 * (value_noise(table, hits.px[w] * 1.7, hits.py[w] * 3.1) - 0.5)
        rz = -hits.rdz[w] * inv + ripple
        refl = sky_color(sky, hits.rdx[w] * inv, hits.rdy[w] * inv, rz, table)
        fres = 0.3 + 0.6 * (1.0 - np.clip(-hits.rdz[w] * inv, 0.0, 1.0)) ** 4
        for ch in range(3):
            col[ch][w] = col[ch][w] * (1 - fres) + refl[ch] * fres * (0.55 + 0.45 * sun[w])
    t = hits.t
    fog = np.maximum(1.0 - np.exp(-t / sky.fog), smoothstep(0.55 * FAR_DEPTH, FAR_DEPTH, t))
    return [c + (sky.horizon[ch] - c) * fog for ch, c in enumerate(col)]


def render_layout(layout: Layout, size: int | tuple[int, int]) -> Scene:
    """Ray-cast a scene description into image, label, depth and instances (docs/method.md §1)."""
    cam, sky = layout.camera, layout.sky
    table = noise_table(layout.noise_seed)
    r = _rays(cam, size)
    parts = [(oi, shape, look) for oi, obj in enumerate(layout.objects)
             for shape, look in obj.parts]
    tbest, part_id = _cast(r, parts)
    sky_mask = ~(tbest <= FAR_DEPTH)  # far-plane clipping; also catches inf
    depth = np.where(sky_mask, F32(FAR_DEPTH), tbest).astype(F32)

    hits = _hits(r, tbest, np.flatnonzero(~sky_mask.ravel()))
    normal, alb, lab, inst, water = _surfaces(layout, parts, hits, part_id.ravel()[hits.idx],
                                              r.f, table)
    col = _shade(sky, hits, normal, alb, water, _sunlight(layout, hits, normal), table)
    rgb = np.empty((r.H * r.W, 3), F32)
    rgb[hits.idx] = np.stack(col, axis=-1)
    miss = np.flatnonzero(sky_mask.ravel())
    sdx, sdy, sdz = r.dx.ravel()[miss], r.dy.ravel()[miss], r.dz.ravel()[miss]
    inv = 1.0 / np.sqrt(sdx * sdx + sdy * sdy + sdz * sdz)
    rgb[miss] = np.stack(sky_color(sky, sdx * inv, sdy * inv, sdz * inv, table), axis=-1)
    label = np.full(r.H * r.W, SKY, dtype=np.uint8)
    instance = np.zeros(r.H * r.W, dtype=np.uint16)
    label[hits.idx] = lab
    instance[hits.idx] = inst
    noise_rng = np.random.default_rng([layout.noise_seed, 11])
    img = rgb * F32(cam.exposure)
    img += noise_rng.standard_normal(img.shape, dtype=F32) * F32(cam.noise)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(r.H, r.W, 3)
    camera = {"height": r.h, "pitch": float(cam.pitch), "fov": float(cam.fov), "focal_px": r.f}
    return Scene(image=image, label=label.reshape(r.H, r.W), depth=depth,
                 instance=instance.reshape(r.H, r.W), camera=camera)
