"""The primitives of SynthScenes: object shapes (bounds, ray intersection, surface normal) and
the value noise behind textures, clouds and region borders."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

F32 = np.float32
INF = np.float32(np.inf)  # ray parameter of a miss
EPS = 1e-4  # hits closer than this are self-intersections


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
        return np.where((disc >= 0) & (t > EPS), t, INF)

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
            t = np.where((disc >= 0) & (ts > EPS) & (z >= self.z0) & (z <= self.z1), ts, INF)
            # A cap at ground level is never seen from above the ground: skip it.
            for zc in (self.z1, self.z0) if self.z0 > 1e-6 else (self.z1,):
                tc = (zc - oz) / dz
                x, y = px + tc * dx, py + tc * dy
                t = np.where((tc > EPS) & (x * x + y * y <= r2) & (tc < t), tc, t)
        return t

    def normal(self, x, y, z):
        cx, cy = self.center
        rx, ry = x - cx, y - cy
        side = rx * rx + ry * ry > (self.radius * 0.999) ** 2
        inv = 1.0 / self.radius
        up = np.where(z > 0.5 * (self.z0 + self.z1), F32(1), F32(-1))
        return (np.where(side, rx * inv, 0), np.where(side, ry * inv, 0),
                np.where(side, 0, up).astype(F32))


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
            t = INF
            for root in ((-b - sq) / a, (-b + sq) / a):
                z = oz + root * dz
                ok = (disc >= 0) & (root > EPS) & (z >= 0) & (z <= h)
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
        return np.where((tmax >= tmin) & (tmin > EPS), tmin, INF)

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
        lnx = np.where(on_x, np.sign(qx), 0).astype(F32)
        lny = np.where(on_y, np.sign(qy), 0).astype(F32)
        return c * lnx - s * lny, s * lnx + c * lny, np.where(on_z, np.sign(qz), 0).astype(F32)


Shape = Sphere | Cylinder | Cone | Box

NOISE_N = 64  # period of the value-noise lattice (power of two)


def noise_table(seed: int) -> np.ndarray:
    """Value-noise lattice, stored per cell as its four corners (a, b-a, c-a, a-b-c+d), so
    that one gather fetches a whole cell: (N*N, 4) float32."""
    n = NOISE_N
    v = np.random.default_rng([seed, 7]).random((n, n), dtype=F32)
    a, b = v, np.roll(v, -1, axis=1)
    c, d = np.roll(v, -1, axis=0), np.roll(np.roll(v, -1, axis=0), -1, axis=1)
    return np.stack([a, b - a, c - a, a - b - c + d], axis=-1).reshape(n * n, 4)


def value_noise(table, x, y):
    """Smooth (bilinear of smoothstep) value noise in [0, 1], period 64 in both coordinates."""
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    fx = fx * fx * (3.0 - 2.0 * fx)
    fy = fy * fy * (3.0 - 2.0 * fy)
    m = NOISE_N - 1
    idx = (yf.astype(np.int32) & m) * NOISE_N + (xf.astype(np.int32) & m)
    q = table[idx]
    return q[..., 0] + q[..., 1] * fx + (q[..., 2] + q[..., 3] * fx) * fy


def fbm(table, x, y):
    """Two octaves of value noise (roughly 0.1..0.9)."""
    return (0.65 * value_noise(table, x, y)
            + 0.35 * value_noise(table, 2.03 * x + 17.1, 2.03 * y + 5.3))


def smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
