"""Fits on the training crops that a report split does not change — k-means on the raw
features and on a head's codes, the linear probe on the raw features — kept on disk while
re-scoring (`rescore_published`), so that a second report split re-uses them.

A fit's file is named by the digest of everything it depends on (the training features'
record: the crops' digest and the backbone settings, nuisance included; the head's weights;
seed, cluster count and fitting settings) and holds that description: a changed input is
another name, and a file whose description differs, or that cannot be read, is fitted again.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..io import json_digest, load_json, save_npz
from ..train.data import array_digest


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
