"""The premise measurements: AUROC of pair similarities for "same class", FPS's share on things."""

import numpy as np
import pytest
import torch

from depthg_lib.errors import DepthGError
from depthg_lib.premise import fps_thing_share, pixel_pairs, same_class_auroc


def _world(n=6, size=32, seed=0):
    """Images split into a near left half (class 1) and a far right half (class 2)."""
    rng = np.random.default_rng(seed)
    labels = np.ones((n, size, size), np.uint8)
    labels[:, :, size // 2:] = 2
    depth = np.where(labels == 1, 0.2, 0.8) + rng.normal(0, 0.01, labels.shape)
    return labels, depth


def test_features_that_know_the_class_score_one_and_noise_scores_half():
    labels, depth = _world()
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 3)
    feats = onehot.permute(0, 3, 1, 2).float()[:, :, ::4, ::4]  # (N, 3, 8, 8) patch grid
    got = same_class_auroc(feats, depth, labels, pairs_per_image=500)
    assert got["feature"] > 0.97 and got["depth"] > 0.99
    noise = torch.randn(len(labels), 16, 8, 8, generator=torch.Generator().manual_seed(0))
    got = same_class_auroc(noise, np.random.default_rng(1).random(depth.shape), labels, 500)
    assert abs(got["feature"] - 0.5) < 0.1 and abs(got["depth"] - 0.5) < 0.1


def test_depth_gain_appears_when_only_depth_knows():
    labels, depth = _world()
    noise = torch.randn(len(labels), 16, 8, 8, generator=torch.Generator().manual_seed(0))
    got = same_class_auroc(noise, depth, labels, pairs_per_image=500)
    assert got["depth_gain"] > 0.3


def test_excluded_classes_never_appear_in_pairs():
    labels, _ = _world()
    for pts in pixel_pairs(labels, 200, exclude=(2,)):
        lab = labels[0]
        assert (lab[pts[:, 0], pts[:, 1]] == 1).all() and (lab[pts[:, 2], pts[:, 3]] == 1).all()


def test_fps_share_counts_thing_pixels():
    labels, depth = _world()
    everywhere = fps_thing_share(depth, labels, thing_ids=(1, 2), grid_hw=(8, 8), n=4)
    assert everywhere["fps"] == everywhere["random"] == everywhere["pixels"] == 1.0
    left = fps_thing_share(depth, labels, thing_ids=(1,), grid_hw=(8, 8), n=4)
    assert 0 < left["fps"] < 1 and left["pixels"] == pytest.approx(0.5)


def test_mismatched_shapes_are_refused():
    labels, depth = _world()
    with pytest.raises(DepthGError, match="must both be"):
        same_class_auroc(torch.zeros(6, 3, 8, 8), depth[:, :16], labels, 10)
