"""Ray casting a `Layout` into image, label, depth and instances (docs/method.md §1)."""

from __future__ import annotations

import math

import numpy as np

from .classes import FAR_DEPTH, SKY, WATER
from .materials import ground_albedo, ground_material, look_albedo, sky_color
from .noise import noise_table, smoothstep, value_noise
from .scene import Layout, Scene, SceneObject
from .shapes import F32, INF


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


def render_layout(layout: Layout, size: int | tuple[int, int]) -> Scene:
    """Ray-cast a scene description into image, label, depth and instances (docs/method.md §1)."""
    H, W = (size, size) if isinstance(size, int | np.integer) else size
    H, W = int(H), int(W)
    cam, sky, ground = layout.camera, layout.sky, layout.ground
    table = noise_table(layout.noise_seed)
    h = float(cam.height)
    pitch = math.radians(cam.pitch)
    cp, sp = math.cos(pitch), math.sin(pitch)
    f = (W / 2) / math.tan(math.radians(cam.fov) / 2)

    # Rays d = forward + x * right - y * up, forward = (0, cp, sp), up = (0, -sp, cp):
    # forward component 1, so the hit parameter t is the depth along the optical axis.
    xs = ((np.arange(W, dtype=F32) + 0.5 - W / 2) / f)[None, :]
    ys = ((np.arange(H, dtype=F32) + 0.5 - H / 2) / f)[:, None]
    dx = np.broadcast_to(xs, (H, W)).copy()
    dy = np.broadcast_to(cp + ys * sp, (H, W)).copy()
    dz = np.broadcast_to(sp - ys * cp, (H, W)).copy()

    with np.errstate(divide="ignore"):
        tbest = np.where(dz < 0, -h / dz, INF).astype(F32)
    part_id = np.full((H, W), -1, dtype=np.int16)  # -1 = ground
    parts = [(oi, shape, look) for oi, obj in enumerate(layout.objects)
             for shape, look in obj.parts]
    for k, (_, shape, _) in enumerate(parts):
        r0, r1, c0, c1 = _screen_box(*shape.bounds(), h, cp, sp, f, H, W)
        if r0 >= r1 or c0 >= c1:
            continue
        win = (slice(r0, r1), slice(c0, c1))
        t = shape.intersect(0.0, 0.0, h, dx[win], dy[win], dz[win])
        closer = t < tbest[win]
        tbest[win][closer] = t[closer]
        part_id[win][closer] = k

    sky_mask = ~(tbest <= FAR_DEPTH)  # far-plane clipping; also catches inf
    depth = np.where(sky_mask, F32(FAR_DEPTH), tbest).astype(F32)
    label = np.full(H * W, SKY, dtype=np.uint8)
    instance = np.zeros(H * W, dtype=np.uint16)
    rgb = [np.empty(H * W, F32) for _ in range(3)]

    hit = np.flatnonzero(~sky_mask.ravel())
    t = tbest.ravel()[hit]
    rdx, rdy, rdz = dx.ravel()[hit], dy.ravel()[hit], dz.ravel()[hit]
    px, py, pz = rdx * t, rdy * t, h + rdz * t
    n = hit.size
    nx, ny, nz = np.zeros(n, F32), np.zeros(n, F32), np.ones(n, F32)
    alb = [np.empty(n, F32) for _ in range(3)]
    lab, inst = np.empty(n, np.uint8), np.zeros(n, np.uint16)
    ray_len = np.sqrt(rdx * rdx + rdy * rdy + rdz * rdz)
    water = np.zeros(n, bool)

    ids = part_id.ravel()[hit]
    order = np.argsort(ids, kind="stable")
    uniq, starts = np.unique(ids[order], return_index=True)
    ends = np.append(starts[1:], n)
    for k, a, b in zip(uniq.tolist(), starts.tolist(), ends.tolist()):
        sel = order[a:b]
        x, y, z = px[sel], py[sel], pz[sel]
        if k == -1:  # ground
            cos_in = np.abs(rdz[sel]) / ray_len[sel]
            fp = t[sel] * ray_len[sel] / f / np.maximum(cos_in, 0.2)
            mat, lat, alo = ground_material(ground, x, y, table)
            g = ground_albedo(ground, mat, x, y, lat, alo, fp, table)
            lab[sel] = mat
            water[sel] = mat == WATER
            for ch in range(3):
                alb[ch][sel] = g[ch]
            continue
        oi, shape, look = parts[k]
        sx, sy, sz = shape.normal(x, y, z)
        nx[sel], ny[sel], nz[sel] = sx, sy, sz
        cos_in = np.abs(sx * rdx[sel] + sy * rdy[sel] + sz * rdz[sel]) / ray_len[sel]
        fp = t[sel] * ray_len[sel] / f / np.maximum(cos_in, 0.2)
        c = look_albedo(look, x, y, z, sx, sy, sz, fp, table)
        for ch in range(3):
            alb[ch][sel] = c[ch]
        lab[sel] = layout.objects[oi].class_id
        inst[sel] = layout.objects[oi].instance

    # Lambertian sun with cast shadows (shadow rays against every object), sky ambient.
    lx, ly, lz = (F32(v) for v in sky.sun_dir)
    ndl = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
    lit = np.flatnonzero(ndl > 0)
    off = 2e-3 + 2e-5 * t[lit]
    ox, oy, oz = px[lit] + nx[lit] * off, py[lit] + ny[lit] * off, pz[lit] + nz[lit] * off
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
    sun = np.zeros(n, F32)
    sun[lit] = ndl[lit] * visible
    hemi = 0.6 + 0.4 * nz
    amb = [sky.ambient * (0.5 * (hz + zz)) for hz, zz in zip(sky.horizon, sky.zenith)]
    col = [a * (am * hemi + sc * sun) for a, am, sc in zip(alb, amb, sky.sun_color)]

    if water.any():  # water mirrors the sky, more so at grazing angles (Fresnel-like)
        w = np.flatnonzero(water)
        inv = 1.0 / ray_len[w]
        ripple = 0.06 * (value_noise(table, px[w] * 1.7, py[w] * 3.1) - 0.5)
        rz = -rdz[w] * inv + ripple
        refl = sky_color(sky, rdx[w] * inv, rdy[w] * inv, rz, table)
        fres = 0.3 + 0.6 * (1.0 - np.clip(-rdz[w] * inv, 0.0, 1.0)) ** 4
        for ch in range(3):
            col[ch][w] = col[ch][w] * (1 - fres) + refl[ch] * fres * (0.55 + 0.45 * sun[w])

    # Aerial perspective: far surfaces fade into the horizon colour, fully at the far plane.
    fog = np.maximum(1.0 - np.exp(-t / sky.fog), smoothstep(0.55 * FAR_DEPTH, FAR_DEPTH, t))
    for ch in range(3):
        rgb[ch][hit] = col[ch] + (sky.horizon[ch] - col[ch]) * fog

    miss = np.flatnonzero(sky_mask.ravel())
    if miss.size:
        sdx, sdy, sdz = dx.ravel()[miss], dy.ravel()[miss], dz.ravel()[miss]
        inv = 1.0 / np.sqrt(sdx * sdx + sdy * sdy + sdz * sdz)
        sc = sky_color(sky, sdx * inv, sdy * inv, sdz * inv, table)
        for ch in range(3):
            rgb[ch][miss] = sc[ch]

    label[hit] = lab
    instance[hit] = inst
    noise_rng = np.random.default_rng([layout.noise_seed, 11])
    img = np.stack(rgb, axis=-1) * F32(cam.exposure)
    img += noise_rng.standard_normal(img.shape, dtype=F32) * F32(cam.noise)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(H, W, 3)
    camera = {"height": h, "pitch": float(cam.pitch), "fov": float(cam.fov), "focal_px": f}
    return Scene(image=image, label=label.reshape(H, W), depth=depth,
                 instance=instance.reshape(H, W), camera=camera)
