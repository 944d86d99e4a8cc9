"""Choosing the nuisance strengths on the tune split, from the raw features alone.

    python tools/study_levels.py --profile study --strengths 0,0.5,1 [--kinds offset]

For each strength: k-means on the nuisanced raw features of the training crops (2 seeds) and a
linear probe on them (1,500 steps), both scored on the tune split. No head is trained, so the
choice cannot follow a head's result. The study's strengths (`study_nuisance`) were chosen
with it: k-means falls to about a third of the linear probe, and to about a fifth.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from depthg_lib.config import load_profile
from depthg_lib.errors import run_cli
from depthg_lib.nuisance import KINDS, Nuisance, crop_sources, mean_norm
from depthg_lib.study.scoring import (
    fit_centroids,
    linear_miou,
    linear_probe_raw,
    score_centroids,
    score_linear_raw,
    unsup_miou,
)
from depthg_lib.study.splits import nuisance_images, prepare_knob
from depthg_lib.train.loop import load_frozen_backbone


def raw_scores(profile, strengths, kinds=KINDS, probe_steps: int = 1500,
               max_maps: int = 2000) -> list[dict]:
    """Tune-split k-means and linear-probe mIoU on the raw features at each strength."""
    device = torch.device("cpu")
    backbone = load_frozen_backbone(profile, device)
    kd = prepare_knob(profile, float(profile.study_knob[0]), [profile.fidelity], backbone,
                      device, False)
    train = kd.train_data[profile.fidelity][1]["train"]
    ids = np.unique(np.linspace(0, len(train) - 1, max_maps).round().astype(int))
    clean = torch.from_numpy(np.asarray(train.feats[ids], dtype=np.float32))
    labels = np.asarray(train.labels[ids])
    scale = mean_norm(np.asarray(train.feats[:500], dtype=np.float32))
    every = crop_sources(len(train))  # once, not once per chosen crop
    sources = [every[i] for i in ids]
    n, tune = profile.n_classes, kd.tune[profile.fidelity]
    rows = []
    for s in strengths:
        nz = Nuisance(float(s), scale=scale, dim=clean.shape[1], kinds=tuple(kinds))
        feats = nz.add(clean, sources)
        images = nuisance_images(tune, nz, f"tune{profile.tune_seed}")
        km = [unsup_miou(score_centroids(images.feats, fit_centroids(feats, n, seed),
                                         images.labels, n).sum(0)) for seed in (0, 1)]
        probe = linear_probe_raw(feats.numpy(), labels, n, probe_steps, profile.batch_size,
                                 profile.probe_lr, 0)
        lin = linear_miou(score_linear_raw(probe, images, n).sum(0))
        rows.append({"strength": float(s), "kinds": list(kinds),
                     "kmeans": round(float(np.mean(km)), 2), "linear": round(lin, 2),
                     "ratio": round(float(np.mean(km)) / lin, 3), "scale": round(scale, 4)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/study_levels.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="study")
    parser.add_argument("--strengths", default="0,0.5,1")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args(argv)
    rows = raw_scores(load_profile(args.profile),
                      [float(s) for s in args.strengths.split(",")], args.kinds.split(","))
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    run_cli(main)
