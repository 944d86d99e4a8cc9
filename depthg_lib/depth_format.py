"""How depth maps are stored (docs/method.md §2): per image, min–max normalised depth (larger =
farther) as a 16-bit PNG, `round(d̂ · 65535)`."""

from __future__ import annotations

import os

import numpy as np

from .config import check_fidelity
from .io import read_depth_png

UINT16_MAX = 65535
STAGE_COMMAND = "python -m depthg_lib.depth"


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Per-image min–max normalisation to [0,1] (float32); a constant map becomes 0."""
    depth = np.asarray(depth, dtype=np.float64)
    lo, hi = float(depth.min()), float(depth.max())
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("depth map holds non-finite values")
    if hi <= lo:
        return np.zeros(depth.shape, dtype=np.float32)
    return ((depth - lo) / (hi - lo)).astype(np.float32)


def depth_to_uint16(depth: np.ndarray) -> np.ndarray:
    """Min–max normalise and store as uint16: `round(d̂ · 65535)`."""
    return np.round(normalise_depth(depth) * UINT16_MAX).astype(np.uint16)


def depth_from_uint16(stored: np.ndarray, fidelity: str = "corrected") -> np.ndarray:
    """Stored depth → float32: `corrected`, u / 65535 in [0,1]; `released`, the released
    loader's integers 0..255 (golden README note 7: its floor(d̂·255) is `u // 257` but within
    1/514 below an integer). 8-bit input (the released code's PNGs) is those integers already."""
    stored = np.asarray(stored)
    check_fidelity(fidelity)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / (1.0 if fidelity == "released" else 255.0)
    if fidelity == "released":
        return (stored.astype(np.int64) // 257).astype(np.float32)
    return (stored / UINT16_MAX).astype(np.float32)


def load_depth_png(path: str | os.PathLike, fidelity: str = "corrected") -> np.ndarray:
    """Read a stored depth PNG: `corrected` → [0,1] float32, `released` → 0..255 float32."""
    remedy = f"re-run `{STAGE_COMMAND} --profile <profile>`"
    return depth_from_uint16(read_depth_png(path, remedy), fidelity)

