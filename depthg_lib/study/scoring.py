"""Scoring on cached features (heads, k-means, linear probes; one matrix per image), paired
bootstrap intervals, and the fits on the training crops kept while re-scoring (`FitCache`)."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans

from ..errors import DepthGError
from ..evaluate import CLUSTER_ALPHA
from ..io import json_digest, load_json, save_npz
from ..metrics import confusion_histogram, scores
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
    """Codes of cached features; given `feats_flip`, the mean with its flipped-back codes
    (docs/method.md §9)."""
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
    """Per-image matrices of the cluster and linear probes, as `evaluate` scores a head."""
    code = F.interpolate(head_codes(model.head, images.feats, images.feats_flip),
                         size=images.labels.shape[1:], mode="bilinear", align_corners=False)
    cluster = model.cluster_probe(code, alpha=CLUSTER_ALPHA, log_probs=True).argmax(1).numpy()
    linear = model.linear_probe(code).argmax(1).numpy()
    k = int(model.cluster_probe.clusters.shape[0])
    return {"unsup": per_image_histograms(cluster, images.labels, k, n_classes),
            "linear": per_image_histograms(linear, images.labels, n_classes, n_classes)}


def fit_centroids(vectors: torch.Tensor, k: int, seed: int,
                  max_points: int = MAX_FIT_POINTS) -> torch.Tensor:
    """Unit-norm k-means centroids (k, D) of at most `max_points` unit patch vectors."""
    rng = np.random.default_rng(seed)
    flat = F.normalize(vectors.float(), dim=1).permute(0, 2, 3, 1)
    per_map = max(1, max_points // len(flat))
    points = [patches[rng.choice(len(patches), min(per_map, len(patches)), replace=False)]
              for patches in flat.reshape(len(flat), -1, flat.shape[-1]).numpy()]
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
    """A 1×1 convolution on raw features trained on the crops' labels (cross-entropy on
    logits upsampled to label size): what the head's linear probe does, without the head."""
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
        opt.zero_grad()
        F.cross_entropy(logits, target, ignore_index=-100).backward()
        opt.step()
    return probe.eval()


@torch.no_grad()
def score_linear_raw(probe, images: ImageSet, n_classes: int) -> np.ndarray:
    feats = (images.feats + images.feats_flip.flip(dims=[3])) / 2
    logits = F.interpolate(probe(feats), size=images.labels.shape[1:], mode="bilinear",
                           align_corners=False)
    return per_image_histograms(logits.argmax(1).numpy(), images.labels, n_classes, n_classes)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, metric, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """Mean over seeds of metric(a) − metric(b) of (S, N, K, C) per-seed, per-image matrices,
    and its percentile interval: each draw resamples seeds and images, the same for both sides
    (what they share cancels), and recomputes the metric on the summed matrices."""
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 4 or b.ndim != 4 or a.shape[:2] != b.shape[:2]:
        raise DepthGError(f"paired_bootstrap needs (seeds, images, K, C) arrays with the same "
                          f"seeds and images, got {a.shape} and {b.shape}")
    n_seeds, n_images = a.shape[:2]

    def mean_diff(weights_a, weights_b, seeds):
        return float(np.mean([metric(weights_a[s]) - metric(weights_b[s]) for s in seeds]))

    point = mean_diff(a.sum(1), b.sum(1), range(n_seeds))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds)
        counts = np.bincount(rng.integers(0, n_images, n_images), minlength=n_images)
        ha = np.tensordot(counts, a, axes=([0], [1]))  # (S, K, C): images reweighted
        hb = np.tensordot(counts, b, axes=([0], [1]))
        draws[r] = mean_diff(ha, hb, seeds)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return {"diff": point, "lo": float(lo), "hi": float(hi), "level": level,
            "n_boot": int(n_boot), "seeds": int(n_seeds), "images": int(n_images)}


def unsup_miou(histogram: np.ndarray) -> float:
    """Unsupervised mIoU (%) of a cluster × class matrix: Hungarian matching first."""
    return float(scores(histogram, hungarian=True)["miou"])


def linear_miou(histogram: np.ndarray) -> float:
    """Linear-probe mIoU (%) of a class × class matrix (no matching)."""
    return float(scores(histogram, hungarian=False)["miou"])


METRICS = {"unsup": unsup_miou, "linear": linear_miou}


def verdict(ci: dict) -> str:
    """Words for an interval: which side of zero it lies on."""
    if ci["lo"] > 0:
        return "helps (interval above 0)"
    if ci["hi"] < 0:
        return "hurts (interval below 0)"
    return "no detectable difference (interval contains 0)"


def last_quarter(n_points: int) -> int:
    """How many validations back "the last quarter" of a curve of n_points starts."""
    return max(1, n_points // 4)


def fit_identity(kind: str, cache, seed: int, k: int, head=None, **settings) -> dict:
    """What a fit on the training crops of `cache` depends on: their features' record and, for a
    fit on a head's codes, the head's weights (a head trained or shipped anew is another head)."""
    meta = load_json(Path(cache.folder) / "features.json")
    features = {"settings": meta.get("settings"), "split": meta.get("splits", {}).get(cache.split)}
    weights = None
    if head is not None:
        arrays = [v.detach().cpu().float().numpy() for _, v in sorted(head.state_dict().items())]
        weights = array_digest("head weights", *arrays)["digest"][:16]
    return {"kind": kind, "features": features, "seed": seed, "k": k, "head": weights, **settings}


class FitCache:
    """Fits by identity in `folder` (None: every fit computed, nothing kept)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None

    def get(self, identity: dict, fit: Callable[[], dict[str, np.ndarray]]
            ) -> dict[str, np.ndarray]:
        if self.folder is None:
            return fit()
        text = json.dumps(identity, sort_keys=True, default=str)
        path = self.folder / f"{identity['kind']}_{json_digest(identity)}.npz"
        try:
            with np.load(path) as z:
                if str(z["identity"]) == text:
                    return {k: z[k] for k in z.files if k != "identity"}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # missing or unreadable (an older format, a damaged copy): fitted below
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
