"""The study's nuisance knob: structured, class-free signal added to the frozen features.

An experimental device of the course (docs/method.md, "The nuisance knob"), not part of
DepthG. Real ViT features carry signal that says nothing about the class of a patch: a
per-image offset, a pattern tied to the position on the patch grid (Denoising Vision
Transformers, 2024) and a few high-norm outlier tokens (Vision Transformers Need Registers,
2024). Clustering on unit-normalised features is dominated by such directions; a linear probe
can learn to ignore them. The knob adds the three to the backbone's output, after the
backbone and before anything reads it (kNN mining, training, every baseline, scoring), at a
strength `s` (0 = the features as they are):

- **offset**: per *source image*, a vector in a fixed `rank`-dimensional subspace, of norm
  ≈ s · m (m = the mean patch-feature norm of the clean training features), added to every
  patch. The five crops of a source image share it (one camera, one scene).
- **pattern**: the same for every image — a smooth function of the patch's position on the
  input's grid (a few low-frequency waves) in another `rank`-dimensional subspace, of RMS norm
  s · m over the grid.
- **outliers**: per source image, `n_outliers` patch positions of the input's grid (drawn per
  source, the same for its crops and its mirror image) receive a vector of norm
  `outlier_gain` · s · m along one shared direction.

Everything is a function of (seed, the source's name, the grid position): the same source
gets the same nuisance in every arm, baseline and run, and nothing depends on labels.
"""

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

    def __post_init__(self):
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise DepthGError(f"nuisance strength must be a number >= 0, got {self.strength!r}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise DepthGError(f"unknown nuisance kinds {sorted(unknown)}; choose from {KINDS}")
        if self.dim < 2 * self.rank + 1:
            raise DepthGError(f"features of {self.dim} channels cannot hold a nuisance of rank "
                              f"{self.rank} (needs {2 * self.rank + 1})")

    def identity(self) -> dict:
        """What a stored result depends on (the scale rounded: it is measured in float)."""
        d = asdict(self)
        d["scale"] = round(self.scale, 4)
        d["kinds"] = list(self.kinds)
        return d

    @property
    def off(self) -> bool:
        return self.strength == 0 or not self.kinds

    # -- the fixed parts: subspaces and the grid pattern ---------------------------------
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

    # -- per source ------------------------------------------------------------------------
    def _source_rng(self, source: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, 3, zlib.crc32(source.encode())])

    def source_parts(self, source: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(offset coefficients (rank,), outlier positions (n_outliers,) on an h×w grid)."""
        rng = self._source_rng(source)
        coeff = rng.standard_normal(self.rank)
        coeff /= np.linalg.norm(coeff) + 1e-12
        where = rng.choice(h * w, size=min(self.n_outliers, h * w), replace=False)
        return coeff, where

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
        n, _, h, w = out.shape
        q = self.basis()
        amp = self.strength * self.scale
        if "pattern" in self.kinds:
            out += amp * self.pattern(h, w)[None]
        for i, source in enumerate(sources):
            coeff, where = self.source_parts(source, h, w)
            if "offset" in self.kinds:
                out[i] += (amp * (q[:, :self.rank] @ torch.from_numpy(coeff).float()))[:, None,
                                                                                     None]
            if "outliers" in self.kinds:
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
    f = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    return float(f.norm(dim=1).mean())
