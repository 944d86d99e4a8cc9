"""What a SynthScenes image is made of, and the rendered `Scene`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .shapes import Shape, value_noise


@dataclass(frozen=True)
class Look:
    """Two colours (RGB in 0..1) mixed by a pattern (plain, noise, stripes, checker, leaves,
    windows, bricks) of period `scale` metres; `axis` orients stripes and checkers."""

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
            n = value_noise(table, x * 0.2 + self.offset, y * 0.2 - self.offset)
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
        along, lateral = c * px + s * py, -s * px + c * py
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
    """One rendered image with its exact ground truth (docs/method.md §1)."""

    image: np.ndarray  # uint8 (H, W, 3)
    label: np.ndarray  # uint8 (H, W) class ids, see CLASSES
    depth: np.ndarray  # float32 (H, W) metres along the optical axis; sky = FAR_DEPTH
    instance: np.ndarray  # uint16 (H, W), 0 = stuff
    camera: dict  # height (m), pitch (deg, < 0 looks down), fov (deg, horizontal), focal_px
