"""How depth maps are stored and read back (docs/method.md §2).

Per image, min–max normalised depth (larger = farther) as a 16-bit PNG: `round(d̂ · 65535)`.
The released code stored 8 bits; `load_depth_png(..., "released")` re-creates its 8-bit
integers on load. The depth stage that writes these files is `depthg_lib.depth`.
"""

from __future__ import annotations

import os

import numpy as np

from .config import check_fidelity
from .io import read_depth_png

UINT16_MAX = 65535
STAGE_COMMAND = "python -m depthg_lib.depth"


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Per-image min–max normalisation to [0,1] (float32); a constant map becomes all 0."""
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
    """Stored depth → what training reads (float32).

    `corrected`: `u / 65535` in [0,1]. `released`: the 8-bit integers 0..255 of the released
    loader (golden README: depth in the training path is the 8-bit PNG read as integers, not
    divided by 255). The released depth script *floored* d̂·255 to uint8 (golden README
    note 7); here `u // 257` (65535 = 255·257), which equals floor(d̂·255) except where d̂·255 lies
    within 1/514 below an integer, where the 16-bit rounding lifts it to that integer.
    8-bit input (a PNG written by the released code) is taken as those integers already.
    """
    stored = np.asarray(stored)
    check_fidelity(fidelity)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) if fidelity == "released" else \
            (stored.astype(np.float32) / 255.0)
    stored = stored.astype(np.int64)
    if fidelity == "released":
        return (stored // 257).astype(np.float32)
    return (stored / UINT16_MAX).astype(np.float32)


def load_depth_png(path: str | os.PathLike, fidelity: str = "corrected") -> np.ndarray:
    """Read a stored depth PNG: `corrected` → [0,1] float32, `released` → 0..255 float32.

    Rounding exactly as `depth_from_uint16` documents.
    """
    remedy = f"re-run `{STAGE_COMMAND} --profile <profile>`"
    return depth_from_uint16(read_depth_png(path, remedy), fidelity)

