"""Procedural value noise: the textures, clouds and region borders of SynthScenes."""

from __future__ import annotations

import numpy as np

from .shapes import F32

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
