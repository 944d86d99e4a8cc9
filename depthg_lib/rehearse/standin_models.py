"""Stand-in weights of the real shapes, stand-in kNN features, and the FLOPs of a ViT forward
(what a projection to a GPU divides by its throughput)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path
from ..models import build_timm_vit


def write_backbone_standin(name: str, path: Path) -> dict:
    """The timm architecture of backbone `name` with fixed-seed random weights, saved as a
    `.pth` state dict (timm layout): the file the stages then load like a downloaded one."""
    if path.is_file():
        return {"file": str(path), "bytes": path.stat().st_size, "written": False}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = build_timm_vit(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(vit.state_dict(), tmp)
    return {"file": str(path), "bytes": path.stat().st_size, "written": True,
            "parameters": sum(p.numel() for p in vit.parameters())}


def vit_shape(name: str) -> tuple[int, int, int]:
    """(embedding width, blocks, patch size) of backbone `name`, built without weights."""
    with torch.device("meta"):
        vit = build_timm_vit(name)
    patch = vit.patch_embed.patch_size
    patch = patch[0] if isinstance(patch, tuple | list) else patch
    return int(vit.embed_dim), len(vit.blocks), int(patch)


def vit_forward_flops(width: int, blocks: int, patch: int, res: int) -> float:
    """FLOPs of one ViT forward at res × res: per block the linear layers (12·d² per token:
    qkv 3d², projection d², MLP 8d²) and attention (2·T²·d), two FLOPs per multiply-add."""
    tokens = (res // patch) ** 2 + 1
    macs = blocks * (tokens * 12 * width * width + 2 * tokens * tokens * width)
    return 2.0 * macs


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 random unit rows: stand-in kNN features of the real N and D."""
    rng = np.random.default_rng(seed)
    feats = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # in slices: no float64 copy of the whole table
        part = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        feats[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return feats
