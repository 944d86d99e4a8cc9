"""SynthScenes: procedurally ray-cast outdoor scenes with exact labels and depth (SPEC §1).

The course's default dataset: it needs no download and runs on a fresh CPU machine. Every
image is ray-cast in numpy, vectorised over pixels: a pinhole camera looks at a ground plane
whose material regions (grass, road, sand, water) are procedural, buildings stand in the
background, and things (box, sphere, cylinder, cone, tree, person) stand on the ground. Label,
depth and instance of a pixel all come from the same first hit, so they agree exactly.

Appearance is drawn so that colour alone does not give the class away: per-instance colours
from overlapping hue ranges, the same texture families for every thing class, Lambertian
shading with cast shadows, fog and sensor noise.

World frame: x right, y forward, z up, ground at z = 0, camera at (0, 0, height). Depth is the
distance along the optical axis (not along the ray); rays are scaled so that their forward
component is 1, which makes the ray parameter `t` equal to that depth.

    scene = render_scene(seed=0, size=128)      # one image, in memory
    generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)   # STEGO layout
    python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S --seed K
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DepthGError, run_cli
from ..io import atomic_path, check_stage_settings, save_image

# --------------------------------------------------------------------------------------------
# The one class table (ids = position). Stuff first, then things.


@dataclass(frozen=True)
class SynthClass:
    """One SynthScenes class: its name, the colour figures draw it with, thing or stuff."""

    name: str
    color: tuple[int, int, int]
    is_thing: bool


CLASSES: tuple[SynthClass, ...] = (
    SynthClass("sky", (110, 170, 235), False),
    SynthClass("grass", (80, 160, 40), False),
    SynthClass("road", (128, 64, 128), False),
    SynthClass("sand", (235, 205, 130), False),
    SynthClass("water", (20, 60, 170), False),
    SynthClass("building", (105, 105, 105), False),
    SynthClass("box", (230, 40, 50), True),
    SynthClass("sphere", (255, 150, 0), True),
    SynthClass("cylinder", (0, 205, 215), True),
    SynthClass("cone", (245, 235, 30), True),
    SynthClass("tree", (15, 95, 35), True),
    SynthClass("person", (235, 60, 235), True),
)
N_CLASSES = len(CLASSES)
CLASS_NAMES = tuple(c.name for c in CLASSES)
CLASS_ID = {c.name: i for i, c in enumerate(CLASSES)}
FAR_DEPTH = 100.0
"""Depth (metres) of sky pixels: the far plane. Hits farther than this are clipped to sky."""

SKY, GRASS, ROAD, SAND, WATER, BUILDING, BOX, SPHERE, CYLINDER, CONE, TREE, PERSON = range(12)
THING_IDS = tuple(i for i, c in enumerate(CLASSES) if c.is_thing)
RENDER_VERSION = 2  # bump when the renderer changes what a seed produces
SPLIT_IDS = {"train": 0, "val": 1}

_F32 = np.float32
_INF = np.float32(np.inf)
_EPS = 1e-4

# --------------------------------------------------------------------------------------------
# Shapes: each knows its bounds, its ray intersection and its normal. Ray arguments are
# component arrays (or scalars) that broadcast: primary rays share one origin, shadow rays
# share one direction. Parameters are Python floats so that float32 arrays stay float32.


@dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float

    def bounds(self):
        (x, y, z), r = self.center, self.radius
        return (x - r, y - r, z - r), (x + r, y + r, z + r)

    def intersect(self, ox, oy, oz, dx, dy, dz):
        cx, cy, cz = self.center
        px, py, pz = ox - cx, oy - cy, oz - cz
        a = dx * dx + dy * dy + dz * dz
        b = px * dx + py * dy + pz * dz
        c = px * px + py * py + pz * pz - self.radius ** 2
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > _EPS), t, _INF)

    def normal(self, x, y, z):
        cx, cy, cz = self.center
        inv = 1.0 / self.radius
        return (x - cx) * inv, (y - cy) * inv, (z - cz) * inv


@dataclass(frozen=True)
class Cylinder:
    """Vertical closed cylinder, axis through `center` (x, y), from z0 to z1."""

    center: tuple[float, float]
    radius: float
    z0: float
    z1: float

    def bounds(self):
        (x, y), r = self.center, self.radius
        return (x - r, y - r, self.z0), (x + r, y + r, self.z1)

    def intersect(self, ox, oy, oz, dx, dy, dz):
        cx, cy = self.center
        r2 = self.radius ** 2
        px, py = ox - cx, oy - cy
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = dx * dx + dy * dy
            b = px * dx + py * dy
            c = px * px + py * py - r2
            disc = b * b - a * c
            ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
            z = oz + ts * dz
            t = np.where((disc >= 0) & (ts > _EPS) & (z >= self.z0) & (z <= self.z1), ts, _INF)
            # A cap at ground level is never seen from above the ground: skip it.
            for zc in (self.z1, self.z0) if self.z0 > 1e-6 else (self.z1,):
                tc = (zc - oz) / dz
                x, y = px + tc * dx, py + tc * dy
                t = np.where((tc > _EPS) & (x * x + y * y <= r2) & (tc < t), tc, t)
        return t

    def normal(self, x, y, z):
        cx, cy = self.center
        rx, ry = x - cx, y - cy
        side = rx * rx + ry * ry > (self.radius * 0.999) ** 2
        inv = 1.0 / self.radius
        up = np.where(z > 0.5 * (self.z0 + self.z1), _F32(1), _F32(-1))
        return (np.where(side, rx * inv, 0), np.where(side, ry * inv, 0),
                np.where(side, 0, up).astype(_F32))


@dataclass(frozen=True)
class Cone:
    """Vertical cone standing on the ground: base radius at z = 0, apex at z = height."""

    center: tuple[float, float]
    radius: float
    height: float

    def bounds(self):
        (x, y), r = self.center, self.radius
        return (x - r, y - r, 0.0), (x + r, y + r, self.height)

    def intersect(self, ox, oy, oz, dx, dy, dz):
        cx, cy = self.center
        h = self.height
        k2 = (self.radius / h) ** 2
        px, py, pz = ox - cx, oy - cy, oz - h
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = dx * dx + dy * dy - k2 * dz * dz
            b = px * dx + py * dy - k2 * pz * dz
            c = px * px + py * py - k2 * pz * pz
            disc = b * b - a * c
            sq = np.sqrt(np.maximum(disc, 0.0))
            t = _INF
            for root in ((-b - sq) / a, (-b + sq) / a):
                z = oz + root * dz
                ok = (disc >= 0) & (root > _EPS) & (z >= 0) & (z <= h)
                t = np.where(ok & (root < t), root, t)
        return t

    def normal(self, x, y, z):
        cx, cy = self.center
        k2 = (self.radius / self.height) ** 2
        nx, ny, nz = x - cx, y - cy, k2 * (self.height - z)
        inv = 1.0 / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-6)
        return nx * inv, ny * inv, nz * inv


@dataclass(frozen=True)
class Box:
    """Box turned by `yaw` (radians) about the vertical axis through `center` (x, y)."""

    center: tuple[float, float]
    half: tuple[float, float]
    z0: float
    z1: float
    yaw: float = 0.0

    def bounds(self):
        c, s = abs(math.cos(self.yaw)), abs(math.sin(self.yaw))
        ex = c * self.half[0] + s * self.half[1]
        ey = s * self.half[0] + c * self.half[1]
        (x, y) = self.center
        return (x - ex, y - ey, self.z0), (x + ex, y + ey, self.z1)

    def intersect(self, ox, oy, oz, dx, dy, dz):
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        px, py = ox - self.center[0], oy - self.center[1]
        lx, ly = c * px + s * py, -s * px + c * py
        ldx, ldy = c * dx + s * dy, -s * dx + c * dy
        hx, hy = self.half
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ix, iy, iz = 1.0 / ldx, 1.0 / ldy, 1.0 / dz
            x1, x2 = (-hx - lx) * ix, (hx - lx) * ix
            y1, y2 = (-hy - ly) * iy, (hy - ly) * iy
            z1, z2 = (self.z0 - oz) * iz, (self.z1 - oz) * iz
            # fmin/fmax ignore the NaN of 0 * inf (a ray exactly in a face's plane).
            tmin = np.fmax(np.fmax(np.fmin(x1, x2), np.fmin(y1, y2)), np.fmin(z1, z2))
            tmax = np.fmin(np.fmin(np.fmax(x1, x2), np.fmax(y1, y2)), np.fmax(z1, z2))
        return np.where((tmax >= tmin) & (tmin > _EPS), tmin, _INF)

    def normal(self, x, y, z):
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        px, py = x - self.center[0], y - self.center[1]
        qx = (c * px + s * py) / self.half[0]
        qy = (-s * px + c * py) / self.half[1]
        qz = (z - 0.5 * (self.z0 + self.z1)) / (0.5 * (self.z1 - self.z0))
        ax, ay, az = np.abs(qx), np.abs(qy), np.abs(qz)
        on_x = (ax >= ay) & (ax >= az)
        on_y = ~on_x & (ay >= az)
        on_z = ~on_x & ~on_y
        lnx = np.where(on_x, np.sign(qx), 0).astype(_F32)
        lny = np.where(on_y, np.sign(qy), 0).astype(_F32)
        return c * lnx - s * lny, s * lnx + c * lny, np.where(on_z, np.sign(qz), 0).astype(_F32)


Shape = Sphere | Cylinder | Cone | Box

# --------------------------------------------------------------------------------------------
# Scene description. `sample_layout` draws one from a seed; tests build their own.


@dataclass(frozen=True)
class Look:
    """Surface appearance: two colours (RGB in 0..1) mixed by a procedural pattern.

    pattern: plain | noise | stripes | checker | leaves | windows | bricks; `scale` is the
    pattern period in metres; `axis` orients stripes (3-D) and checkers (its x, y).
    """

    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    pattern: str = "noise"
    scale: float = 0.5
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    offset: float = 0.0


@dataclass(frozen=True)
class SceneObject:
    """A labelled object: its class, instance id (0 for stuff) and (shape, look) parts."""

    class_id: int
    instance: int
    parts: tuple[tuple[Shape, Look], ...]


@dataclass(frozen=True)
class Blob:
    """A noisy ellipse on the ground; `rho < 1` inside."""

    center: tuple[float, float]
    radii: tuple[float, float]
    angle: float = 0.0
    wobble: float = 0.0
    offset: float = 0.0

    def rho(self, x, y, table):
        c, s = math.cos(self.angle), math.sin(self.angle)
        px, py = x - self.center[0], y - self.center[1]
        u, v = (c * px + s * py) / self.radii[0], (-s * px + c * py) / self.radii[1]
        rho = np.sqrt(u * u + v * v)
        if self.wobble:
            n = _vnoise(table, x * 0.2 + self.offset, y * 0.2 - self.offset)
            rho = rho + self.wobble * (n - 0.5)
        return rho


@dataclass(frozen=True)
class Road:
    """A (gently bending) strip on the ground through `point`, heading `angle` (radians)."""

    point: tuple[float, float]
    angle: float
    width: float
    bend: float = 0.0
    bend_freq: float = 0.05
    phase: float = 0.0
    marked: bool = True

    def coords(self, x, y):
        """(lateral, along) coordinates in metres; on the road where |lateral| < width / 2."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        px, py = x - self.point[0], y - self.point[1]
        along = c * px + s * py
        lateral = -s * px + c * py
        if self.bend:
            lateral = lateral + self.bend * np.sin(along * self.bend_freq + self.phase)
        return lateral, along


@dataclass(frozen=True)
class Ground:
    """Material regions of the ground plane and their looks (priority road > water > sand)."""

    grass: Look
    road_look: Look
    sand_look: Look
    water_look: Look
    lake: Blob | None = None
    beach: float = 0.0
    sand: Blob | None = None
    roads: tuple[Road, ...] = ()


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at (0, 0, height) looking along +y; pitch < 0 looks down (degrees)."""

    height: float
    pitch: float
    fov: float  # horizontal field of view, degrees
    exposure: float = 1.0
    noise: float = 0.015  # sensor noise, standard deviation in 0..1 units


@dataclass(frozen=True)
class Sky:
    zenith: tuple[float, float, float]
    horizon: tuple[float, float, float]
    sun_dir: tuple[float, float, float]  # unit vector towards the sun
    sun_color: tuple[float, float, float] = (1.0, 0.95, 0.85)
    ambient: float = 0.45
    clouds: float = 0.55  # noise threshold: higher means fewer clouds
    fog: float = 120.0  # metres


@dataclass(frozen=True)
class Layout:
    """Everything `render_layout` needs; `noise_seed` fixes textures and sensor noise."""

    camera: Camera
    sky: Sky
    ground: Ground
    objects: tuple[SceneObject, ...] = ()
    noise_seed: int = 0


@dataclass
class Scene:
    """One rendered image with its exact ground truth (SPEC §1)."""

    image: np.ndarray  # uint8 (H, W, 3)
    label: np.ndarray  # uint8 (H, W) class ids, see CLASSES
    depth: np.ndarray  # float32 (H, W) metres along the optical axis; sky = FAR_DEPTH
    instance: np.ndarray  # uint16 (H, W), 0 = stuff
    camera: dict  # height (m), pitch (deg, < 0 looks down), fov (deg, horizontal), focal_px


# --------------------------------------------------------------------------------------------
# Procedural noise


_NOISE_N = 64  # period of the value-noise lattice (power of two)


def _noise_table(seed: int) -> np.ndarray:
    """Value-noise lattice, stored per cell as its four corners (a, b-a, c-a, a-b-c+d), so
    that one gather fetches a whole cell: (N*N, 4) float32."""
    n = _NOISE_N
    v = np.random.default_rng([seed, 7]).random((n, n), dtype=_F32)
    a, b = v, np.roll(v, -1, axis=1)
    c, d = np.roll(v, -1, axis=0), np.roll(np.roll(v, -1, axis=0), -1, axis=1)
    return np.stack([a, b - a, c - a, a - b - c + d], axis=-1).reshape(n * n, 4)


def _vnoise(table, x, y):
    """Smooth (bilinear of smoothstep) value noise in [0, 1], period 64 in both coordinates."""
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    m = _NOISE_N - 1
    idx = (yf.astype(np.int32) & m) * _NOISE_N + (xf.astype(np.int32) & m)
    q = table[idx]
    return q[..., 0] + q[..., 1] * fx + (q[..., 2] + q[..., 3] * fx) * fy


def _fbm(table, x, y):
    """Two octaves of value noise (roughly 0.1..0.9)."""
    return 0.65 * _vnoise(table, x, y) + 0.35 * _vnoise(table, 2.03 * x + 17.1, 2.03 * y + 5.3)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


_PATTERN_MEAN = {"plain": 0.12, "noise": 0.5, "stripes": 0.5, "checker": 0.5, "leaves": 0.5,
                 "windows": 0.25, "bricks": 0.2}


def _pattern(look: Look, x, y, z, nx, ny, nz, fp, table):
    """Mixing weight in [0, 1] of `look.color2`; fades to its mean when a pixel (footprint
    `fp` metres) is too coarse for the pattern, a cheap stand-in for mip-mapping."""
    s, kind, o = look.scale, look.pattern, look.offset
    if kind == "plain":
        v = 0.25 * _vnoise(table, (x + z) / s * 0.5 + o, (y - z) / s * 0.5 + o)
    elif kind in ("noise", "leaves"):
        v = _fbm(table, (x + 0.7 * z) / s + o, (y - 0.6 * z) / s - o)
        v = _smoothstep(0.3, 0.7, v) if kind == "noise" else _smoothstep(0.42, 0.58, v)
    elif kind == "stripes":
        a = look.axis
        w = (a[0] * x + a[1] * y + a[2] * z) / s + o
        v = _smoothstep(-0.35, 0.35, np.sin(6.2831853 * w))
    elif kind == "checker":
        c, sn = look.axis[0], look.axis[1]
        u, w = (c * x + sn * y) / s + o, (-sn * x + c * y) / s
        v = ((np.floor(u) + np.floor(w) + np.floor(z / s)).astype(np.int32) & 1).astype(_F32)
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
        v = v.astype(_F32)
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    lod = np.clip(1.5 - 3.0 * fp / s, 0.0, 1.0)
    mean = _PATTERN_MEAN[kind]
    return mean + (v - mean) * lod


def _look_albedo(look: Look, x, y, z, nx, ny, nz, fp, table):
    v = _pattern(look, x, y, z, nx, ny, nz, fp, table)
    grain_lod = np.clip(1.5 - 3.0 * fp / 0.15, 0.0, 1.0)
    grain = 1.0 + 0.16 * grain_lod * (_vnoise(table, (x - z) * 6.7 + 31.0, (y + z) * 6.7) - 0.5)
    return tuple((c1 + (c2 - c1) * v) * grain for c1, c2 in zip(look.color, look.color2))


# --------------------------------------------------------------------------------------------
# Ground and sky


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
    lateral = np.full(np.shape(x), np.inf, dtype=_F32)
    along = np.zeros(np.shape(x), dtype=_F32)
    for road in ground.roads:
        lat, alo = road.coords(x, y)
        on = np.abs(lat) < 0.5 * road.width
        mat[on] = ROAD
        if road.marked:
            lateral = np.where(on, lat, lateral)
            along = np.where(on, alo, along)
    return mat, lateral, along


def _ground_albedo(ground: Ground, mat, x, y, lateral, along, fp, table):
    out = [np.empty(x.shape, _F32) for _ in range(3)]
    zero = np.zeros((), _F32)
    looks = {GRASS: ground.grass, ROAD: ground.road_look, SAND: ground.sand_look,
             WATER: ground.water_look}
    for cls, look in looks.items():
        sel = np.flatnonzero(mat == cls)
        if sel.size == 0:
            continue
        xs, ys, f = x[sel], y[sel], fp[sel]
        # Large-scale colour variation between the two colours, fine pattern as brightness.
        low = _smoothstep(0.25, 0.75, _fbm(table, xs / 9.0 + look.offset, ys / 9.0))
        v = _pattern(look, xs, ys, zero, zero, zero, np.ones((), _F32), f, table)
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
        for ch in range(3):
            out[ch][sel] = rgb[ch]
    return out


def _sky_color(sky: Sky, dx, dy, dz, table):
    """Sky colour for unit ray directions: gradient, sun glow and a layer of clouds."""
    e = np.sqrt(np.clip(dz, 0.0, 1.0))
    col = [h + (zz - h) * e for h, zz in zip(sky.horizon, sky.zenith)]
    lx, ly, lz = sky.sun_dir
    cosang = dx * lx + dy * ly + dz * lz
    glow = 0.9 * np.exp((cosang - 1.0) * 400.0) + 0.25 * np.exp((cosang - 1.0) * 8.0)
    col = [c + s * glow for c, s in zip(col, sky.sun_color)]
    up = np.maximum(dz, 0.02)
    scale = 1.0 / up  # intersection with a cloud layer, in units of the layer height
    n = _fbm(table, dx * scale * 0.9 + 3.3, dy * scale * 0.9 - 7.1)
    cover = _smoothstep(sky.clouds, sky.clouds + 0.22, n) * _smoothstep(0.03, 0.25, dz)
    shade = 0.82 + 0.18 * _smoothstep(0.3, 0.9, n)
    return [c + (0.97 * shade - c) * cover * 0.9 for c in col]


# --------------------------------------------------------------------------------------------
# Rendering


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
    """Ray-cast a scene description into image, label, depth and instances (SPEC §1)."""
    H, W = (size, size) if isinstance(size, int | np.integer) else size
    H, W = int(H), int(W)
    cam, sky, ground = layout.camera, layout.sky, layout.ground
    table = _noise_table(layout.noise_seed)
    h = float(cam.height)
    pitch = math.radians(cam.pitch)
    cp, sp = math.cos(pitch), math.sin(pitch)
    f = (W / 2) / math.tan(math.radians(cam.fov) / 2)

    # Rays d = forward + x * right - y * up, forward = (0, cp, sp), up = (0, -sp, cp):
    # forward component 1, so the hit parameter t is the depth along the optical axis.
    xs = ((np.arange(W, dtype=_F32) + 0.5 - W / 2) / f)[None, :]
    ys = ((np.arange(H, dtype=_F32) + 0.5 - H / 2) / f)[:, None]
    dx = np.broadcast_to(xs, (H, W)).copy()
    dy = np.broadcast_to(cp + ys * sp, (H, W)).copy()
    dz = np.broadcast_to(sp - ys * cp, (H, W)).copy()

    with np.errstate(divide="ignore"):
        tbest = np.where(dz < 0, -h / dz, _INF).astype(_F32)
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
    depth = np.where(sky_mask, _F32(FAR_DEPTH), tbest).astype(_F32)
    label = np.full(H * W, SKY, dtype=np.uint8)
    instance = np.zeros(H * W, dtype=np.uint16)
    rgb = [np.empty(H * W, _F32) for _ in range(3)]

    hit = np.flatnonzero(~sky_mask.ravel())
    t = tbest.ravel()[hit]
    rdx, rdy, rdz = dx.ravel()[hit], dy.ravel()[hit], dz.ravel()[hit]
    px, py, pz = rdx * t, rdy * t, h + rdz * t
    n = hit.size
    nx, ny, nz = np.zeros(n, _F32), np.zeros(n, _F32), np.ones(n, _F32)
    alb = [np.empty(n, _F32) for _ in range(3)]
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
            g = _ground_albedo(ground, mat, x, y, lat, alo, fp, table)
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
        c = _look_albedo(look, x, y, z, sx, sy, sz, fp, table)
        for ch in range(3):
            alb[ch][sel] = c[ch]
        lab[sel] = layout.objects[oi].class_id
        inst[sel] = layout.objects[oi].instance

    # Lambertian sun with cast shadows (shadow rays against every object), sky ambient.
    lx, ly, lz = (_F32(v) for v in sky.sun_dir)
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
            blocked |= shape.intersect(ox[cand], oy[cand], oz[cand], lx, ly, lz) < _INF
        visible[cand[blocked]] = False
    sun = np.zeros(n, _F32)
    sun[lit] = ndl[lit] * visible
    hemi = 0.6 + 0.4 * nz
    amb = [sky.ambient * (0.5 * (hz + zz)) for hz, zz in zip(sky.horizon, sky.zenith)]
    col = [a * (am * hemi + sc * sun) for a, am, sc in zip(alb, amb, sky.sun_color)]

    if water.any():  # water mirrors the sky, more so at grazing angles (Fresnel-like)
        w = np.flatnonzero(water)
        inv = 1.0 / ray_len[w]
        ripple = 0.06 * (_vnoise(table, px[w] * 1.7, py[w] * 3.1) - 0.5)
        rz = -rdz[w] * inv + ripple
        refl = _sky_color(sky, rdx[w] * inv, rdy[w] * inv, rz, table)
        fres = 0.3 + 0.6 * (1.0 - np.clip(-rdz[w] * inv, 0.0, 1.0)) ** 4
        for ch in range(3):
            col[ch][w] = col[ch][w] * (1 - fres) + refl[ch] * fres * (0.55 + 0.45 * sun[w])

    # Aerial perspective: far surfaces fade into the horizon colour, fully at the far plane.
    fog = np.maximum(1.0 - np.exp(-t / sky.fog), _smoothstep(0.55 * FAR_DEPTH, FAR_DEPTH, t))
    for ch in range(3):
        rgb[ch][hit] = col[ch] + (sky.horizon[ch] - col[ch]) * fog

    miss = np.flatnonzero(sky_mask.ravel())
    if miss.size:
        sdx, sdy, sdz = dx.ravel()[miss], dy.ravel()[miss], dz.ravel()[miss]
        inv = 1.0 / np.sqrt(sdx * sdx + sdy * sdy + sdz * sdz)
        sc = _sky_color(sky, sdx * inv, sdy * inv, sdz * inv, table)
        for ch in range(3):
            rgb[ch][miss] = sc[ch]

    label[hit] = lab
    instance[hit] = inst
    noise_rng = np.random.default_rng([layout.noise_seed, 11])
    img = np.stack(rgb, axis=-1) * _F32(cam.exposure)
    img += noise_rng.standard_normal(img.shape, dtype=_F32) * _F32(cam.noise)
    image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(H, W, 3)
    camera = {"height": h, "pitch": float(cam.pitch), "fov": float(cam.fov), "focal_px": f}
    return Scene(image=image, label=label.reshape(H, W), depth=depth,
                 instance=instance.reshape(H, W), camera=camera)


# --------------------------------------------------------------------------------------------
# Random scene layouts

# Class-specific but overlapping hue ranges (in turns, wrapped): a green box on grass happens.
_THING_HUES = {BOX: (0.0, 1.0), SPHERE: (-0.12, 0.42), CYLINDER: (0.22, 0.78),
               CONE: (-0.3, 0.3), TREE: (0.05, 0.4), PERSON: (0.0, 1.0)}
_THING_PATTERNS = ("plain", "noise", "stripes", "checker")


def _hsv(h, s, v):
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), v))


def _u(rng, lo, hi):
    return lo + (hi - lo) * float(rng.random())


def _pick(rng, options):
    return options[int(rng.random() * len(options))]


def _random_look(rng, hue_range, sat=(0.3, 0.85), val=(0.35, 0.95), patterns=_THING_PATTERNS):
    hue = _u(rng, *hue_range)
    c1 = _hsv(hue, _u(rng, *sat), _u(rng, *val))
    c2 = _hsv(hue + _u(rng, -0.15, 0.15), _u(rng, *sat), _u(rng, *val))
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-9
    return Look(c1, c2, pattern=_pick(rng, patterns), scale=_u(rng, 0.15, 0.6),
                axis=tuple(float(a) for a in axis), offset=_u(rng, 0, 64))


def _sample_sky(rng) -> Sky:
    elev, azim = math.radians(_u(rng, 18, 65)), _u(rng, -math.pi, math.pi)
    sun = (math.cos(elev) * math.sin(azim), math.cos(elev) * math.cos(azim), math.sin(elev))
    warm = _u(rng, 0, 1)  # 0: white midday light, 1: warmer light and a warmer horizon
    return Sky(zenith=_hsv(_u(rng, 0.56, 0.64), _u(rng, 0.45, 0.75), _u(rng, 0.7, 0.95)),
               horizon=_hsv(_u(rng, 0.52, 0.6) - 0.09 * warm, _u(rng, 0.1, 0.3),
                            _u(rng, 0.85, 1.0)),
               sun_dir=sun, sun_color=(0.9, 0.873 - 0.072 * warm, 0.828 - 0.18 * warm),
               ambient=_u(rng, 0.45, 0.62), clouds=_u(rng, 0.4, 0.75), fog=_u(rng, 80, 200))


def _sample_ground(rng, fov_rad) -> Ground:
    grass = Look(_hsv(_u(rng, 0.2, 0.3), _u(rng, 0.4, 0.7), _u(rng, 0.35, 0.6)),
                 _hsv(_u(rng, 0.13, 0.24), _u(rng, 0.35, 0.65), _u(rng, 0.45, 0.7)),
                 pattern=_pick(rng, ("noise", "noise", "stripes")), scale=_u(rng, 0.3, 2.5),
                 axis=(1.0, 0.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0, 0.0),
                 offset=_u(rng, 0, 64))
    if rng.random() < 0.7:  # asphalt
        grey = _u(rng, 0.22, 0.42)
        road_look = Look(_hsv(_u(rng, 0.55, 0.7), 0.08, grey), _hsv(0.1, 0.1, grey * 1.15),
                         pattern="noise", scale=0.25, offset=_u(rng, 0, 64))
        marked = rng.random() < 0.8
    else:  # paving stones
        ang = _u(rng, 0, math.pi)
        road_look = Look(_hsv(_u(rng, -0.05, 0.12), _u(rng, 0.1, 0.45), _u(rng, 0.4, 0.65)),
                         _hsv(_u(rng, -0.05, 0.12), _u(rng, 0.05, 0.35), _u(rng, 0.3, 0.55)),
                         pattern="checker", scale=_u(rng, 0.4, 1.0),
                         axis=(math.cos(ang), math.sin(ang), 0.0), offset=_u(rng, 0, 64))
        marked = False
    sand_look = Look(_hsv(_u(rng, 0.08, 0.14), _u(rng, 0.25, 0.5), _u(rng, 0.65, 0.88)),
                     _hsv(_u(rng, 0.06, 0.12), _u(rng, 0.2, 0.45), _u(rng, 0.55, 0.8)),
                     pattern=_pick(rng, ("stripes", "noise")), scale=_u(rng, 0.3, 0.9),
                     axis=tuple(float(v) for v in (rng.normal(), rng.normal(), 0.0)),
                     offset=_u(rng, 0, 64))
    water_look = Look(_hsv(_u(rng, 0.48, 0.62), _u(rng, 0.5, 0.85), _u(rng, 0.25, 0.5)),
                      _hsv(_u(rng, 0.45, 0.6), _u(rng, 0.4, 0.8), _u(rng, 0.35, 0.6)),
                      pattern="noise", scale=_u(rng, 0.5, 2.0), offset=_u(rng, 0, 64))

    def in_view(dmin, dmax):
        d, phi = _u(rng, dmin, dmax), _u(rng, -0.55, 0.55) * fov_rad
        return d * math.sin(phi), d * math.cos(phi)

    lake, beach = None, 0.0
    if rng.random() < 0.55:
        beach = _u(rng, 0.08, 0.4) if rng.random() < 0.75 else 0.0
        lake = Blob(in_view(8, 35), (_u(rng, 5, 17), _u(rng, 4, 12)), _u(rng, 0, math.pi),
                    _u(rng, 0.1, 0.4), _u(rng, 0, 64))

    roads: list[Road] = []
    n_roads = 0 if rng.random() < 0.25 else 1 + int(rng.random() < 0.25)
    for _ in range(n_roads):
        for _ in range(16):  # a road runs past the lake, not through it
            if rng.random() < 0.55:  # leading away from the camera
                point = (_u(rng, -9, 9), _u(rng, 4, 14))
                angle = math.pi / 2 + _u(rng, -0.7, 0.7)
            else:  # crossing the view
                point = (0.0, _u(rng, 6, 30))
                angle = _u(rng, -0.45, 0.45)
            road = Road(point, angle, _u(rng, 3.5, 9.0), bend=_u(rng, 0, 3),
                        bend_freq=_u(rng, 0.02, 0.12), phase=_u(rng, 0, 6.3), marked=marked)
            if lake is not None:
                lat = road.coords(np.float32(lake.center[0]), np.float32(lake.center[1]))[0]
                reach = max(lake.radii) * (1 + beach + 0.5 * lake.wobble)
                if abs(float(lat)) < reach + 0.5 * road.width + road.bend:
                    continue
            roads.append(road)
            break
    sand = None
    if rng.random() < 0.4:
        c = in_view(5, 30)
        sand = Blob(c, (_u(rng, 3, 12), _u(rng, 2, 8)), _u(rng, 0, math.pi), _u(rng, 0.1, 0.5),
                    _u(rng, 0, 64))
    return Ground(grass, road_look, sand_look, water_look, lake=lake, beach=beach, sand=sand,
                  roads=tuple(roads))


def _thing_parts(rng, cls, x, y):
    """(parts, footprint radius) of one thing of class `cls` standing at (x, y)."""
    look = _random_look(rng, _THING_HUES[cls])
    if cls == BOX:
        hx, hy = _u(rng, 0.3, 1.2), _u(rng, 0.3, 1.2)
        shape = Box((x, y), (hx, hy), 0.0, _u(rng, 0.4, 2.2), _u(rng, 0, math.pi))
        return ((shape, look),), math.hypot(hx, hy)
    if cls == SPHERE:
        r = _u(rng, 0.35, 1.1)
        return ((Sphere((x, y, r), r), look),), r
    if cls == CYLINDER:
        r = _u(rng, 0.25, 0.8)
        return ((Cylinder((x, y), r, 0.0, _u(rng, 0.5, 2.6)), look),), r
    if cls == CONE:
        r = _u(rng, 0.4, 1.1)
        return ((Cone((x, y), r, _u(rng, 1.0, 2.8)), look),), r
    if cls == TREE:
        trunk_r, trunk_h, crown_r = _u(rng, 0.1, 0.22), _u(rng, 1.0, 2.4), _u(rng, 0.7, 1.6)
        bark = _random_look(rng, (0.04, 0.12), sat=(0.2, 0.5), val=(0.2, 0.45),
                            patterns=("noise", "stripes"))
        leaves = _random_look(rng, _THING_HUES[TREE], sat=(0.35, 0.8), val=(0.25, 0.7),
                              patterns=("leaves", "leaves", "noise"))
        cz = trunk_h + 0.6 * crown_r
        parts = [(Cylinder((x, y), trunk_r, 0.0, cz), bark),
                 (Sphere((x, y, cz), crown_r), leaves)]
        if rng.random() < 0.4:
            a = _u(rng, 0, 2 * math.pi)
            r2 = crown_r * _u(rng, 0.55, 0.8)
            parts.append((Sphere((x + 0.6 * crown_r * math.cos(a), y + 0.6 * crown_r *
                                  math.sin(a), cz + 0.45 * crown_r), r2), leaves))
        return tuple(parts), crown_r
    if cls == PERSON:  # a capsule stack: legs, torso with round shoulders, arms, head
        s = _u(rng, 0.95, 1.25)
        yaw = _u(rng, 0, 2 * math.pi)
        sx, sy = -math.sin(yaw), math.cos(yaw)  # sideways direction
        trousers = _random_look(rng, (0.0, 1.0), sat=(0.1, 0.6), val=(0.15, 0.6),
                                patterns=("plain", "noise"))
        skin = _random_look(rng, (0.03, 0.1), sat=(0.3, 0.6), val=(0.35, 0.95),
                            patterns=("plain",))
        parts = [(Cylinder((x + o * sx, y + o * sy), 0.085 * s, 0.0, 0.86 * s), trousers)
                 for o in (-0.1 * s, 0.1 * s)]
        parts += [(Cylinder((x, y), 0.2 * s, 0.82 * s, 1.36 * s), look),
                  (Sphere((x, y, 1.36 * s), 0.2 * s), look)]
        parts += [(Cylinder((x + o * sx, y + o * sy), 0.06 * s, 0.78 * s, 1.4 * s), look)
                  for o in (-0.27 * s, 0.27 * s)]
        parts.append((Sphere((x, y, 1.67 * s), 0.12 * s), skin))
        return tuple(parts), 0.32 * s
    raise ValueError(f"class {cls} is not a thing")


def _moved(shape: Shape, x: float, y: float) -> Shape:
    """The same shape, shifted by (x, y) on the ground."""
    c = shape.center
    return dataclasses.replace(shape, center=(c[0] + x, c[1] + y, *c[2:]))


def _sample_building(rng, fov_rad, ground: Ground, table):
    for _ in range(10):
        d, phi = _u(rng, 17, 50), _u(rng, -0.6, 0.6) * fov_rad
        x, y = d * math.sin(phi), d * math.cos(phi)
        if rng.random() < 0.25:  # a long low wall
            half = (_u(rng, 5, 15), _u(rng, 0.2, 0.45))
            height = _u(rng, 1.5, 3.2)
            patterns = ("bricks", "bricks", "noise", "stripes")
        else:
            half = (_u(rng, 3, 10), _u(rng, 3, 8))
            height = _u(rng, 4, 20)
            patterns = ("windows", "windows", "windows", "bricks")
        yaw = -phi + _u(rng, -0.5, 0.5)
        radius = math.hypot(*half)
        px, py = np.float32([x]), np.float32([y])
        if ground.lake is not None and ground.lake.rho(px, py, table)[0] < 1.2 + ground.beach:
            continue
        if any(abs(r.coords(px, py)[0][0]) < 0.5 * r.width + r.bend + radius for r in ground.roads):
            continue
        pattern = _pick(rng, patterns)
        facade = _hsv(_u(rng, -0.05, 0.6), _u(rng, 0.04, 0.35), _u(rng, 0.5, 0.9))
        if pattern == "windows":
            second = _hsv(_u(rng, 0.55, 0.65), _u(rng, 0.1, 0.4), _u(rng, 0.12, 0.35))
            scale = _u(rng, 2.2, 3.5)
        else:
            second = _hsv(_u(rng, 0.0, 0.15), _u(rng, 0.05, 0.3), _u(rng, 0.55, 0.9))
            scale = _u(rng, 0.22, 0.4) if pattern == "bricks" else _u(rng, 0.5, 2.0)
        look = Look(facade, second, pattern=pattern, scale=scale, axis=(0.0, 0.0, 1.0),
                    offset=_u(rng, 0, 1))
        return SceneObject(BUILDING, 0, ((Box((x, y), half, 0.0, height, yaw), look),)), (x, y,
                                                                                          radius)
    return None


def sample_layout(rng: int | np.random.Generator, n_things: int | None = None,
                  n_buildings: int | None = None) -> Layout:
    """Draw a random scene description; `n_things`/`n_buildings` override the counts."""
    rng = np.random.default_rng(rng)
    camera = Camera(height=_u(rng, 1.0, 2.6), pitch=_u(rng, -24.0, 0.0), fov=_u(rng, 60.0, 90.0),
                    exposure=_u(rng, 0.92, 1.1), noise=_u(rng, 0.008, 0.025))
    fov_rad = math.radians(camera.fov)
    noise_seed = int(rng.integers(2 ** 31))
    table = _noise_table(noise_seed)
    sky = _sample_sky(rng)
    ground = _sample_ground(rng, fov_rad)

    objects: list[SceneObject] = []
    if n_buildings is None:
        n_buildings = _pick(rng, (0, 1, 1, 2, 2, 3, 3, 4, 5))
    for _ in range(n_buildings):
        drawn = _sample_building(rng, fov_rad, ground, table)
        if drawn is not None:
            objects.append(drawn[0])

    if n_things is None:
        n_things = 4 + int(rng.random() * 6)
    placed: list[tuple[float, float, float]] = []
    for _ in range(n_things):
        cls = _pick(rng, THING_IDS)
        parts, radius = _thing_parts(rng, cls, 0.0, 0.0)  # drawn once, then moved into place
        dmax = 7.0 if cls == PERSON else 12.0
        for _ in range(30):
            d = max(2.6, radius + 1.5) + (dmax - 2.6) * _u(rng, 0, 1) ** 1.5
            phi = _u(rng, -0.45, 0.45) * fov_rad
            x, y = d * math.sin(phi), d * math.cos(phi)
            if any(math.hypot(x - qx, y - qy) < radius + qr + 0.2 for qx, qy, qr in placed):
                continue
            mat, _, _ = ground_material(ground, np.float32([x]), np.float32([y]), table)
            if mat[0] == WATER:
                continue
            placed.append((x, y, radius))
            parts = tuple((_moved(shape, x, y), look) for shape, look in parts)
            objects.append(SceneObject(cls, len(placed), parts))
            break
    return Layout(camera=camera, sky=sky, ground=ground, objects=tuple(objects),
                  noise_seed=noise_seed)


def render_scene(seed: int | np.random.Generator, size: int | tuple[int, int],
                 n_things: int | None = None) -> Scene:
    """Render one random scene; the same seed gives the same scene at every size."""
    return render_layout(sample_layout(seed, n_things=n_things), size)


def class_shares(labels: Sequence[np.ndarray] | np.ndarray) -> dict[str, float]:
    """Fraction of all pixels that each class covers, by class name."""
    counts = np.zeros(256, dtype=np.int64)
    for lab in labels:
        counts += np.bincount(np.asarray(lab).ravel(), minlength=256)
    total = max(int(counts[:N_CLASSES].sum()), 1)
    return {name: float(counts[i]) / total for i, name in enumerate(CLASS_NAMES)}


# --------------------------------------------------------------------------------------------
# Writing the dataset (STEGO layout, SPEC §1 and §11)

_OUTPUTS = {"imgs": ".jpg", "labels": ".png", "depth_gt": ".npy", "instances": ".png"}


def _paths(out: Path, split: str, name: str) -> dict[str, Path]:
    return {sub: out / sub / split / f"{name}{ext}" for sub, ext in _OUTPUTS.items()}


def _write_scene(paths: dict[str, Path], scene: Scene) -> None:
    save_image(paths["labels"], scene.label)
    save_image(paths["instances"], scene.instance)
    with atomic_path(paths["depth_gt"]) as tmp, open(tmp, "wb") as fh:
        np.save(fh, scene.depth)
    save_image(paths["imgs"], scene.image, quality=95)  # last: its presence marks "done"


def generate(out_dir, n_train: int, n_val: int, size: int, seed: int, progress: bool = True,
             force: bool = False) -> Path:
    """Render a SynthScenes dataset into `out_dir` (STEGO layout); resumable, deterministic.

    Image i of a split is drawn from `default_rng([seed, split_id, i])`, so an interrupted run
    continues where it stopped and the same arguments give byte-identical files. A re-run with
    other arguments is refused unless `force=True`, which deletes the old images first.
    """
    from tqdm.auto import tqdm

    for name, value, low in (("n_train", n_train, 0), ("n_val", n_val, 0), ("size", size, 16),
                             ("seed", seed, 0)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise DepthGError(f"SynthScenes: {name} must be an integer >= {low}, got {value!r}")
    out = Path(out_dir)
    settings = {"stage": "synthscenes", "renderer_version": RENDER_VERSION,
                "n_train": int(n_train), "n_val": int(n_val), "size": int(size),
                "seed": int(seed), "far_depth": FAR_DEPTH,
                "classes": [dataclasses.asdict(c) for c in CLASSES]}
    if force:
        for sub, ext in _OUTPUTS.items():
            for split in SPLIT_IDS:
                for old in (out / sub / split).glob(f"{split}_*{ext}"):
                    old.unlink()
    check_stage_settings(out, "synthscenes", settings, force=force)

    jobs = [(split, i) for split, count in (("train", n_train), ("val", n_val))
            for i in range(int(count))]
    for split, i in tqdm(jobs, desc=f"SynthScenes {size}px", disable=not progress,
                         unit="img"):
        paths = _paths(out, split, f"{split}_{i:05d}")
        if all(p.exists() for p in paths.values()):
            continue
        scene = render_scene(np.random.default_rng([int(seed), SPLIT_IDS[split], i]), int(size))
        _write_scene(paths, scene)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.data.synthscenes",
        description="Render the SynthScenes dataset (STEGO layout: imgs/, labels/, depth_gt/, "
                    "instances/).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--n-train", type=int, required=True, help="number of training images")
    parser.add_argument("--n-val", type=int, required=True, help="number of validation images")
    parser.add_argument("--size", type=int, required=True, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace a dataset made with other settings")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    out = generate(args.out, args.n_train, args.n_val, args.size, args.seed,
                   progress=not args.no_progress, force=args.force)
    print(f"SynthScenes: {args.n_train} train + {args.n_val} val images of {args.size}px in {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
