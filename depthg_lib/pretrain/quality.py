"""What the embedded ViT's patch features hold: patch labels (majority of each 8×8 patch),
k-means Hungarian-matched to them, CLS attention (chapter A1); the linear probe and the depth
bars are in benchmarks/embedded_quality.py."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from ..metrics import confusion_histogram, scores
from .common import normalise_rgb

IGNORE = 255


def _unit_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) → float (N,3,H,W) in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def patch_rows(features: torch.Tensor, normalise: bool) -> torch.Tensor:
    """(N,h,w,D) features as float64 rows, L2-normalised when `normalise`."""
    x = features.reshape(-1, features.shape[-1]).double()
    return F.normalize(x, dim=1) if normalise else x


@torch.no_grad()
def vit_patch_features(vit: torch.nn.Module, images: np.ndarray, batch: int = 16
                       ) -> torch.Tensor:
    """Last-layer patch tokens (N, h, w, D) of a timm ViT, as the backbone wrapper reads them."""
    vit.eval()
    p = vit.patch_embed.patch_size[0]
    out = []
    for i in range(0, len(images), batch):
        x = normalise_rgb(_unit_tensor(images[i:i + batch]))
        tok = vit.forward_features(x)[:, vit.num_prefix_tokens:]
        out.append(tok.reshape(len(x), x.shape[-2] // p, x.shape[-1] // p, -1))
    return torch.cat(out)


def patch_mean_rgb(images: np.ndarray, patch: int = 8) -> torch.Tensor:
    """Mean RGB colour of each patch (N, h, w, 3) in [0,1]: the colour baseline."""
    return F.avg_pool2d(_unit_tensor(images), patch).permute(0, 2, 3, 1)


def patch_labels(labels: np.ndarray, patch: int = 8) -> np.ndarray:
    """Majority label of each patch (N, h, w); ignore (255) where no pixel is labelled."""
    n, h, w = labels.shape
    blocks = labels.reshape(n, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
    flat = blocks.reshape(-1, patch * patch).astype(np.int64)
    offsets = np.arange(len(flat))[:, None] * 256
    counts = np.bincount((flat + offsets).ravel(), minlength=len(flat) * 256).reshape(-1, 256)
    counts[:, IGNORE] = 0
    maj = counts.argmax(1).astype(np.uint8)  # ties -> lowest class id
    maj[counts.sum(1) == 0] = IGNORE
    return maj.reshape(n, h // patch, w // patch)


def percent_scores(res: dict) -> dict:
    """metrics.scores' figures as this module records them: IoU rounded, None where undefined."""
    return {"miou": res["miou"], "acc": res["acc"],
            "iou": [None if np.isnan(v) else round(float(v), 2) for v in res["iou"]]}


def kmeans_segment(features: torch.Tensor, labels: np.ndarray, n_classes: int, seed: int = 0,
                   normalise: bool = True, n_init: int = 3) -> tuple[np.ndarray, dict]:
    """k-means with `n_classes` clusters on (N,h,w,D) features, Hungarian-matched to (N,h,w)
    patch labels (docs/method.md §9): the class map (N,h,w) and the scores in %."""
    x = patch_rows(features, normalise)
    y = labels.reshape(-1)
    keep = y != IGNORE
    km = KMeans(n_clusters=n_classes, n_init=n_init, random_state=seed).fit(
        x[torch.from_numpy(keep)].numpy())
    clusters = km.predict(x.numpy())
    res = scores(confusion_histogram(clusters[keep], y[keep], n_classes))
    matched = {**percent_scores(res), "cluster_to_class": res["cluster_to_class"].tolist()}
    return res["cluster_to_class"][clusters].reshape(labels.shape), matched


@torch.no_grad()
def vit_cls_attention(vit: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    """Attention of the CLS token to every patch in the last block, per head: (N, heads, h, w)."""
    vit.eval()
    x = normalise_rgb(_unit_tensor(images))
    p = vit.patch_embed.patch_size[0]
    tok = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
    for blk in vit.blocks[:-1]:
        tok = blk(tok)
    attn_mod = vit.blocks[-1].attn
    b, n, d = tok.shape
    qkv = attn_mod.qkv(vit.blocks[-1].norm1(tok)).reshape(b, n, 3, attn_mod.num_heads, -1)
    q, k = qkv.permute(2, 0, 3, 1, 4)[:2]
    q, k = attn_mod.q_norm(q), attn_mod.k_norm(k)
    attn = (q[:, :, :1] @ k.transpose(-2, -1) * attn_mod.scale).softmax(-1)[..., 0, :]
    attn = attn[..., vit.num_prefix_tokens:]
    return attn.reshape(b, attn_mod.num_heads, x.shape[-2] // p, x.shape[-1] // p)
