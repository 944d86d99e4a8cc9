"""Scoring on cached features: trained heads, k-means and linear probes, one matrix per image;
and the fits on the training crops kept on disk while re-scoring (`FitCache`), each named by the
digest of all it depends on, so that a second report split re-uses them and a changed input
(training features, head weights, settings) or an unreadable file is fitted again."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from ..evaluate import CLUSTER_ALPHA
from ..io import json_digest, load_json, save_npz
from ..metrics import confusion_histogram
from ..train.data import array_digest
from .splits import ImageSet

MAX_FIT_POINTS = 50_000  # k-means fits on at most this many patch vectors
RAW_BASELINES = ("kmeans_raw_train_fit", "kmeans_raw_transductive", "linear_raw")


def per_image_histograms(pred: np.ndarray, target: np.ndarray, n_clusters: int,
                         n_classes: int) -> np.ndarray:
    """(N, K, C) confusion matrices, one per image (bootstrap over images needs them)."""
    extra = max(0, n_clusters - n_classes)
    return np.stack([confusion_histogram(p[None], t[None], n_classes, extra)
                     for p, t in zip(pred, target)])


@torch.no_grad()
def head_codes(head, feats: torch.Tensor, feats_flip: torch.Tensor | None = None,
               batch_size: int = 64) -> torch.Tensor:
    """Codes of cached features; with `feats_flip`, averaged with the mirrored image's codes
    flipped back (docs/method.md §9)."""
    head.eval()
    out = []
    for s in range(0, len(feats), batch_size):
        code = head(feats[s:s + batch_size].float())
        if feats_flip is not None:
            code = (code + head(feats_flip[s:s + batch_size].float()).flip(dims=[3])) / 2
        out.append(code)
    return torch.cat(out)


@torch.no_grad()
def score_head(model, images: ImageSet, n_classes: int) -> dict[str, np.ndarray]:
    """Per-image matrices of the cluster probe and the linear probe, as `evaluate` scores a
    head (flip-averaged codes upsampled bilinearly, cluster log-softmax of 2·cos, argmax)."""
    code = head_codes(model.head, images.feats, images.feats_flip)
    code = F.interpolate(code, size=images.labels.shape[1:], mode="bilinear",
                         align_corners=False)
    cluster = model.cluster_probe(code, alpha=CLUSTER_ALPHA, log_probs=True).argmax(1).numpy()
    linear = model.linear_probe(code).argmax(1).numpy()
    k = int(model.cluster_probe.clusters.shape[0])
    return {"unsup": per_image_histograms(cluster, images.labels, k, n_classes),
            "linear": per_image_histograms(linear, images.labels, n_classes, n_classes)}


def fit_centroids(vectors: torch.Tensor, k: int, seed: int,
                  max_points: int = MAX_FIT_POINTS) -> torch.Tensor:
    """k-means (3 restarts) on unit-normalised (N, D, h, w) maps' patch vectors; returns
    unit-norm centroids (k, D). At most `max_points` vectors, drawn evenly per map."""
    rng = np.random.default_rng(seed)
    flat = F.normalize(vectors.float(), dim=1).permute(0, 2, 3, 1)
    per_map = max(1, max_points // len(flat))
    points = []
    for patches in flat.reshape(len(flat), -1, flat.shape[-1]).numpy():
        points.append(patches[rng.choice(len(patches), min(per_map, len(patches)),
                                         replace=False)])
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(np.concatenate(points))
    return F.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)


def score_centroids(maps: torch.Tensor, centroids: torch.Tensor, labels: np.ndarray,
                    n_classes: int) -> np.ndarray:
    """Each pixel takes the centroid of highest cosine similarity (upsampled bilinearly)."""
    sim = torch.einsum("bchw,kc->bkhw", F.normalize(maps.float(), dim=1), centroids)
    sim = F.interpolate(sim, size=labels.shape[1:], mode="bilinear", align_corners=False)
    return per_image_histograms(sim.argmax(1).numpy(), labels, len(centroids), n_classes)


def cached_feats(cache, max_maps: int = 2000) -> torch.Tensor:
    n = len(cache)
    ids = np.unique(np.linspace(0, n - 1, min(n, max_maps)).round().astype(np.int64))
    return torch.from_numpy(np.asarray(cache.feats[ids], dtype=np.float32))


def linear_probe_raw(feats, labels, n_classes: int, steps: int, batch_size: int, lr: float,
                     seed: int) -> torch.nn.Module:
    """A 1×1 convolution on raw (N, D, h, w) features trained on the training crops' (N, H, W)
    labels (arrays or memmaps; cross-entropy on logits upsampled bilinearly to label size,
    ignore pixels skipped) — what the head's linear probe does, without the head."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = torch.nn.Conv2d(feats.shape[1], n_classes, 1)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for _ in range(steps):
        ids = np.sort(torch.randint(0, len(labels), (batch_size,), generator=gen).numpy())
        x = torch.from_numpy(np.asarray(feats[ids], dtype=np.float32))
        target = torch.from_numpy(np.asarray(labels[ids])).long()
        target[(target < 0) | (target >= n_classes)] = -100
        logits = F.interpolate(probe(x), size=target.shape[-2:], mode="bilinear",
                               align_corners=False)
        loss = F.cross_entropy(logits, target, ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def score_linear_raw(probe, images: ImageSet, n_classes: int) -> np.ndarray:
    feats = (images.feats + images.feats_flip.flip(dims=[3])) / 2
    logits = F.interpolate(probe(feats), size=images.labels.shape[1:], mode="bilinear",
                           align_corners=False)
    return per_image_histograms(logits.argmax(1).numpy(), images.labels, n_classes, n_classes)


def features_record(cache) -> dict:
    """What a cached split of features is: its folder's record of the settings and inputs."""
    meta = load_json(Path(cache.folder) / "features.json")
    return {"settings": meta.get("settings"), "split": meta.get("splits", {}).get(cache.split)}


def weights_digest(module: torch.nn.Module) -> str:
    """The digest of a module's weights: a head trained or shipped anew is another head."""
    arrays = [v.detach().cpu().float().numpy() for _, v in sorted(module.state_dict().items())]
    return array_digest("head weights", *arrays)["digest"][:16]


def fit_identity(kind: str, cache, seed: int, k: int, head=None, **settings) -> dict:
    """What a fit on the training crops of `cache` depends on (`head`: fitted on its codes)."""
    return {"kind": kind, "features": features_record(cache), "seed": seed, "k": k,
            "head": weights_digest(head) if head is not None else None, **settings}


class FitCache:
    """Fits by identity in `folder` (None: every fit computed, nothing kept); `hits` counts
    the fits read back."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None
        self.hits = 0

    def get(self, identity: dict, fit: Callable[[], dict[str, np.ndarray]]
            ) -> dict[str, np.ndarray]:
        if self.folder is None:
            return fit()
        text = json.dumps(identity, sort_keys=True, default=str)
        path = self.folder / f"{identity['kind']}_{json_digest(identity)}.npz"
        if path.exists():
            try:
                with np.load(path) as z:
                    if str(z["identity"]) == text:
                        self.hits += 1
                        return {k: z[k] for k in z.files if k != "identity"}
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # unreadable (an older format, a damaged copy): fitted again below
        arrays = fit()
        save_npz(path, identity=np.array(text), **arrays)
        return arrays

    def centroids(self, identity: dict, fit: Callable[[], torch.Tensor]) -> torch.Tensor:
        got = self.get(identity, lambda: {"centroids": fit().numpy()})
        return torch.from_numpy(np.asarray(got["centroids"]))

    def probe(self, identity: dict, fit: Callable[[], torch.nn.Conv2d]) -> torch.nn.Conv2d:
        state = self.get(identity, lambda: {k: v.detach().numpy()
                                            for k, v in fit().state_dict().items()})
        weight = torch.from_numpy(np.asarray(state["weight"]))
        probe = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 1)
        probe.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
        return probe.eval()
