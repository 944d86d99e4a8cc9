"""Probe scores on validation crops while training runs (columns `val_*` of log.csv)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import features as featcache
from ..config import Profile
from ..evalset import as_targets
from ..metrics import confusion_histogram, scores
from ..models import DepthGModel
from .data import CropBatches, rows

BATCH = 32  # validation crops per forward pass


class Validation:
    """Probe metrics on `val_images` of the validation crops (evenly spaced; 0 = all), at
    training resolution."""

    def __init__(self, profile: Profile, source, cached: featcache.CachedSplit | None,
                 backbone, device: torch.device):
        self.profile, self.backbone, self.device = profile, backbone, device
        n = len(cached) if cached is not None else len(source)
        k = profile.val_images
        self.ids = (np.arange(n) if not k or k >= n
                    else np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)))
        self.cached, self.crops = cached, CropBatches(source, profile.res, profile.fidelity)

    def _batches(self):
        for start in range(0, len(self.ids), BATCH):
            ids = self.ids[start:start + BATCH]
            if self.cached is not None:
                feats, label = rows(self.cached.feats, ids), rows(self.cached.labels, ids)
                yield feats.to(self.device).float(), label
            else:
                images, label, _ = self.crops.load(ids)
                yield featcache.featurize(self.backbone, images.to(self.device)).float(), label

    @torch.no_grad()
    def __call__(self, model: DepthGModel) -> dict[str, float]:
        model.eval()
        n_cls, extra = self.profile.n_classes, self.profile.extra_clusters
        lin = np.zeros((n_cls, n_cls), np.int64)
        clu = np.zeros((n_cls + extra, n_cls), np.int64)
        for feats, label in self._batches():
            code = F.interpolate(model.head(feats).float(), size=label.shape[-2:],
                                 mode="bilinear", align_corners=False)
            target = as_targets(label.numpy(), n_cls)
            lin += confusion_histogram(model.linear_probe(code).argmax(1).cpu().numpy(), target,
                                       n_cls)
            _, probs = model.cluster_probe(code, None)
            clu += confusion_histogram(probs.argmax(1).cpu().numpy(), target, n_cls, extra)
        model.train()
        ls, cs = scores(lin, hungarian=False), scores(clu, hungarian=True)
        return {"val_linear_miou": float(ls["miou"]), "val_linear_acc": float(ls["acc"]),
                "val_cluster_miou": float(cs["miou"]), "val_cluster_acc": float(cs["acc"])}
