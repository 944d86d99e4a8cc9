"""Quality bars of the embedded models, measured on SynthScenes never seen in training.

ViT: on patch features against patch labels (majority of each 8×8 patch), k-means
Hungarian-matched mIoU asks whether the classes already are clusters, a linear probe whether
they are linearly readable at all; baselines are random weights and each patch's mean RGB.
Depth: on per-image min–max normalised depth (docs/method.md §2), MAE against that of the best
constant map (the training set's mean), and the per-image Spearman rank correlation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from ..metrics import confusion_histogram, scores
from .common import minmax_normalise, normalise_rgb

IGNORE = 255


def _unit_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) → float (N,3,H,W) in [0,1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


def _rows(features: torch.Tensor, normalise: bool) -> torch.Tensor:
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


def _percent(res: dict) -> dict:
    """metrics.scores' figures as this module records them: IoU rounded, None where undefined."""
    return {"miou": res["miou"], "acc": res["acc"],
            "iou": [None if np.isnan(v) else round(float(v), 2) for v in res["iou"]]}


def kmeans_segment(features: torch.Tensor, labels: np.ndarray, n_classes: int, seed: int = 0,
                   normalise: bool = True, n_init: int = 3) -> tuple[np.ndarray, dict]:
    """k-means with `n_classes` clusters on (N,h,w,D) features, Hungarian-matched to (N,h,w)
    patch labels (docs/method.md §9): the class map (N,h,w) and the scores in %."""
    x = _rows(features, normalise)
    y = labels.reshape(-1)
    keep = y != IGNORE
    km = KMeans(n_clusters=n_classes, n_init=n_init, random_state=seed).fit(
        x[torch.from_numpy(keep)].numpy())
    clusters = km.predict(x.numpy())
    res = scores(confusion_histogram(clusters[keep], y[keep], n_classes))
    matched = {**_percent(res), "cluster_to_class": res["cluster_to_class"].tolist()}
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


def linear_probe(train_feats: torch.Tensor, train_labels: np.ndarray, val_feats: torch.Tensor,
                 val_labels: np.ndarray, n_classes: int, normalise: bool = True,
                 c: float = 1.0, max_iter: int = 300, max_train: int | None = 120_000) -> dict:
    """Logistic regression on (N,h,w,D) train patch features → class of every val patch;
    per-class IoU, mIoU and accuracy in %. Features are L2-normalised when `normalise` (not the
    mean RGB, whose length is its brightness), then standardised so `c` means the same for
    every feature set; ignored patches are left out of fit and score."""
    x_tr, y_tr = _rows(train_feats, normalise).numpy(), train_labels.reshape(-1)
    keep = y_tr != IGNORE
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    if max_train is not None and len(y_tr) > max_train:  # deterministic subsample
        idx = np.random.default_rng(0).choice(len(y_tr), max_train, replace=False)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((x_tr - mu) / sd, y_tr)
    x_va = (_rows(val_feats, normalise).numpy() - mu) / sd
    pred = clf.classes_[clf.predict_proba(x_va).argmax(1)]
    hist = confusion_histogram(pred, val_labels.reshape(-1), n_classes)
    return _percent(scores(hist, hungarian=False))


def feature_quality(train_feats: torch.Tensor, train_plabels: np.ndarray,
                    val_feats: torch.Tensor, val_plabels: np.ndarray, n_classes: int,
                    normalise: bool = True, kmeans_seeds: int = 1) -> dict:
    """One set of frozen patch features: linear probe (fit on train, scored on val) and k-means
    on val (mean over `kmeans_seeds` initialisations)."""
    lin = linear_probe(train_feats, train_plabels, val_feats, val_plabels, n_classes,
                       normalise=normalise)
    runs = [kmeans_segment(val_feats, val_plabels, n_classes, k, normalise=normalise)[1]
            for k in range(kmeans_seeds)]
    km = {"miou": float(np.mean([r["miou"] for r in runs])),
          "acc": float(np.mean([r["acc"] for r in runs])), "iou": runs[0]["iou"],
          "miou_seeds": [round(r["miou"], 2) for r in runs]}
    return {"linear": lin, "kmeans": km}


def meets_backbone_bar(row: dict, linear_min: float = 70.0, class_min: float = 35.0,
                       kmeans_min: float = 35.0) -> bool:
    """A backbone the chapters read well with: linear-probe mIoU ≥ 70, every class present ≥ 35
    IoU under the probe, k-means mIoU ≥ 35."""
    ious = [v for v in row["linear"]["iou"] if v is not None]
    return bool(row["linear"]["miou"] >= linear_min and min(ious) >= class_min
                and row["kmeans"]["miou"] >= kmeans_min)


def depth_quality(pred: torch.Tensor, gt: np.ndarray, mean_map: np.ndarray) -> dict:
    """Min–max normalised MAE vs the constant mean map, and mean per-image Spearman rho."""
    p = minmax_normalise(pred.double()).numpy()
    g = minmax_normalise(torch.from_numpy(gt).double()).numpy()
    mae = float(np.abs(p - g).mean())
    const = float(np.abs(mean_map[None] - g).mean())
    rho = float(np.nanmean([spearmanr(pi.ravel(), gi.ravel())[0] for pi, gi in zip(p, g)]))
    return {"mae": mae, "constant_mae": const, "mae_ratio": mae / const, "spearman": rho,
            "passes": bool(mae <= 0.5 * const and rho >= 0.85)}


def mean_normalised_depth(depth: np.ndarray) -> np.ndarray:
    """The training set's mean min–max normalised depth map (the best-constant baseline)."""
    return minmax_normalise(torch.from_numpy(depth).double()).mean(0).numpy()
