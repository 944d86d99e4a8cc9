"""Random scene layouts: camera, sky, ground regions, buildings and things from a seed."""

from __future__ import annotations

import colorsys
import dataclasses
import math

import numpy as np

from .classes import BOX, BUILDING, CONE, CYLINDER, GRASS, PERSON, ROAD, SAND, SPHERE, TREE, WATER
from .materials import ground_material
from .render import render_layout
from .scene import Blob, Camera, Ground, Layout, Look, Road, Scene, SceneObject, Sky
from .shapes import Box, Cone, Cylinder, Shape, Sphere, noise_table

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


def _ground_looks(rng) -> tuple[Look, Look, bool, Look, Look]:
    """Grass, road (asphalt, maybe marked, or paving stones), sand and water looks."""
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
    return grass, road_look, marked, sand_look, water_look


def _place_roads(rng, lake: Blob | None, beach: float, marked: bool) -> list[Road]:
    """None, one or two roads, each leading away from the camera or crossing the view."""
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
    return roads


def _sample_ground(rng, fov_rad) -> Ground:
    grass, road_look, marked, sand_look, water_look = _ground_looks(rng)

    def in_view(dmin, dmax):
        d, phi = _u(rng, dmin, dmax), _u(rng, -0.55, 0.55) * fov_rad
        return d * math.sin(phi), d * math.cos(phi)

    lake, beach = None, 0.0
    if rng.random() < 0.55:
        beach = _u(rng, 0.08, 0.4) if rng.random() < 0.75 else 0.0
        lake = Blob(in_view(8, 35), (_u(rng, 5, 17), _u(rng, 4, 12)), _u(rng, 0, math.pi),
                    _u(rng, 0.1, 0.4), _u(rng, 0, 64))

    roads = _place_roads(rng, lake, beach, marked)
    sand = None
    if rng.random() < 0.4:
        sand = Blob(in_view(5, 30), (_u(rng, 3, 12), _u(rng, 2, 8)), _u(rng, 0, math.pi),
                    _u(rng, 0.1, 0.5), _u(rng, 0, 64))
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
        return SceneObject(BUILDING, 0, ((Box((x, y), half, 0.0, height, yaw), look),))
    return None


def sample_layout(rng: int | np.random.Generator, n_things: int | None = None,
                  n_buildings: int | None = None, camouflage: float = 0.0) -> Layout:
    """Draw a random scene description; `n_things`/`n_buildings` override the counts.
    `camouflage` (0..1, the study's knob): the chance that a thing wears the look of the ground
    it stands on. Its coins have their own stream, so the layout stays what the seed gives."""
    rng = np.random.default_rng(rng)
    camera = Camera(height=_u(rng, 1.0, 2.6), pitch=_u(rng, -24.0, 0.0), fov=_u(rng, 60.0, 90.0),
                    exposure=_u(rng, 0.92, 1.1), noise=_u(rng, 0.008, 0.025))
    fov_rad = math.radians(camera.fov)
    noise_seed = int(rng.integers(2 ** 31))
    table = noise_table(noise_seed)
    sky = _sample_sky(rng)
    ground = _sample_ground(rng, fov_rad)

    if n_buildings is None:
        n_buildings = _pick(rng, (0, 1, 1, 2, 2, 3, 3, 4, 5))
    buildings = [_sample_building(rng, fov_rad, ground, table) for _ in range(n_buildings)]
    objects = [b for b in buildings if b is not None]  # None: no free spot was found

    if n_things is None:
        n_things = 4 + int(rng.random() * 6)
    placed: list[tuple[float, float, float]] = []
    coins = np.random.default_rng([noise_seed, 13])  # camouflage's own stream
    for _ in range(n_things):
        cls = _pick(rng, tuple(_THING_HUES))  # THING_IDS, in id order
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
            if coins.random() < camouflage:  # dressed like the ground it stands on
                look = {GRASS: ground.grass, ROAD: ground.road_look, SAND: ground.sand_look}
                parts = tuple((shape, look[int(mat[0])]) for shape, _ in parts)
            objects.append(SceneObject(cls, len(placed), parts))
            break
    return Layout(camera=camera, sky=sky, ground=ground, objects=tuple(objects),
                  noise_seed=noise_seed)


def render_scene(seed: int | np.random.Generator, size: int | tuple[int, int],
                 n_things: int | None = None, camouflage: float = 0.0) -> Scene:
    """Render one random scene; the same seed gives the same scene at every size."""
    return render_layout(sample_layout(seed, n_things=n_things, camouflage=camouflage), size)
