"""The study's nuisance knob (docs/method.md, "The nuisance knob"; not part of DepthG): class-free
signal added to the frozen features that hurts clustering but a linear probe can ignore. At
strength s × the clean mean patch norm m: an `offset` per source image, a smooth `pattern` over
the grid and a few `outliers` per source (× outlier_gain), in orthogonal low-rank subspaces; a
function of (seed, source name, grid position) only, so the same in every arm and run."""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import DepthGError

KINDS = ("offset", "pattern", "outliers")


@dataclass(frozen=True)
class Nuisance:
    """One nuisance setting: `strength` in units of the clean features' mean norm `scale`."""

    strength: float
    scale: float
    dim: int
    kinds: tuple[str, ...] = KINDS
    rank: int = 4
    n_outliers: int = 3
    outlier_gain: float = 4.0
    waves: int = 3
    seed: int = 0

    def __post_init__(self):  # tools/study_levels.py passes strengths and kinds from its flags
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise DepthGError(f"nuisance strength must be a number >= 0, got {self.strength!r}")
        if set(self.kinds) - set(KINDS):
            raise DepthGError(f"unknown nuisance kinds {sorted(set(self.kinds) - set(KINDS))}; "
                              f"choose from {KINDS}")

    def identity(self) -> dict:
        """What a stored result depends on (the scale rounded: it is measured in float)."""
        return {**asdict(self), "scale": round(self.scale, 4), "kinds": list(self.kinds)}

    @property
    def off(self) -> bool:
        return self.strength == 0 or not self.kinds

    def basis(self) -> torch.Tensor:
        """(dim, 2·rank + 1) orthonormal columns: offsets, pattern, outlier direction."""
        g = np.random.default_rng([self.seed, 1]).standard_normal((self.dim, 2 * self.rank + 1))
        q, _ = np.linalg.qr(g)
        return torch.from_numpy(q).float()

    def pattern(self, h: int, w: int) -> torch.Tensor:
        """(dim, h, w): low-frequency waves over the grid in [0, 1]², RMS norm 1 over it."""
        rng = np.random.default_rng([self.seed, 2])
        yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        coeff = np.zeros((self.rank, h, w))
        for r in range(self.rank):
            for _ in range(self.waves):
                fy, fx = rng.uniform(0.3, 1.5, size=2) * rng.choice([-1, 1], size=2)
                coeff[r] += rng.standard_normal() * np.cos(2 * np.pi * (fy * yy + fx * xx)
                                                           + rng.uniform(0, 2 * np.pi))
        coeff -= coeff.mean(axis=(1, 2), keepdims=True)
        coeff /= math.sqrt((coeff ** 2).sum(0).mean()) + 1e-12
        q = self.basis()[:, self.rank:2 * self.rank]
        return torch.einsum("dr,rhw->dhw", q, torch.from_numpy(coeff).float())

    def add(self, feats: torch.Tensor, sources: list[str]) -> torch.Tensor:
        """`feats` (N, dim, h, w) plus the nuisance of each map's source (a new tensor)."""
        if feats.dim() != 4 or feats.shape[1] != self.dim:
            raise DepthGError(f"the nuisance expects (N, {self.dim}, h, w) features, got "
                              f"{tuple(feats.shape)}")
        if len(sources) != len(feats):
            raise DepthGError(f"{len(feats)} feature maps but {len(sources)} source names")
        out = feats.float().clone()
        if self.off:
            return out
        h, w = out.shape[2:]
        q, amp = self.basis(), self.strength * self.scale
        offsets = q[:, :self.rank]
        if "pattern" in self.kinds:
            out += amp * self.pattern(h, w)[None]
        for i, source in enumerate(sources):  # its offset coefficients, then outlier positions
            rng = np.random.default_rng([self.seed, 3, zlib.crc32(source.encode())])
            coeff = rng.standard_normal(self.rank)
            coeff /= np.linalg.norm(coeff) + 1e-12
            if "offset" in self.kinds:
                out[i] += (amp * (offsets @ torch.from_numpy(coeff).float()))[:, None, None]
            if "outliers" in self.kinds:
                where = rng.choice(h * w, size=min(self.n_outliers, h * w), replace=False)
                ys, xs = np.unravel_index(where, (h, w))
                out[i][:, ys, xs] += (self.outlier_gain * amp * q[:, -1])[:, None]
        return out


def crop_sources(n_crops: int, split: str = "train", per_source: int = 5) -> list[str]:
    """Source names of five-cropped crops (crop n = 5·index + k comes from image `index`)."""
    return [f"{split}/{n // per_source}" for n in range(n_crops)]


def image_sources(n_images: int, split: str) -> list[str]:
    """Source names of whole images: each image is its own source."""
    return [f"{split}/{i}" for i in range(n_images)]


def mean_norm(feats: torch.Tensor | np.ndarray) -> float:
    """Mean L2 norm of the patch vectors of (N, dim, h, w) features."""
    return float(torch.as_tensor(np.asarray(feats, dtype=np.float32)).norm(dim=1).mean())
