"""Exercises of chapter 01 · Generate depth: their self-checks (`exercises.check("01.1", ...)`)."""

from __future__ import annotations

import numpy as np

from ..depth import depth_agreement, normalise_depth
from .core import Wrong, as_array, call, close_to, register, written


@register("01.1", "normalise(depth): per-image min–max to [0, 1] (a constant map → zeros)",
           "code", "(d − min d) / (max d − min d); guard the constant map, where max = min")
def _check_01_1(fn):
    rng = np.random.default_rng(5)
    maps = [rng.random((7, 9)) * 30 + 2, -rng.random((5, 5)) * 4, np.full((4, 6), 3.5)]
    for d in maps:
        offset_kept = {"dividing by the maximum keeps the offset: subtract the minimum first":
                       d / d.max()} if d.min() > 0 else None
        close_to(call(fn, d.copy()), normalise_depth(d), 1e-5, "normalise(depth)",
                 mistakes=offset_kept)


@register("01.2", "distort(d): a change of depth that keeps Spearman ρ = 1 but has MAE ≥ 0.1",
           "pen", "any strictly increasing function keeps the order of the pixels; make it "
                  "bend enough (both maps are min–max normalised before the MAE)")
def _check_01_2(fn):
    rng = np.random.default_rng(6)
    d = np.linspace(0, 1, 24 * 32).reshape(24, 32)[:, rng.permutation(32)]
    got = as_array(call(fn, d.copy()))
    if got.shape != d.shape or not np.isfinite(got).all():
        raise Wrong(f"return a finite map of the same shape {d.shape}")
    scores = depth_agreement(got, d)
    if not scores["spearman"] > 0.999:
        raise Wrong(f"Spearman ρ is {scores['spearman']:.3f}, not 1: your change reorders "
                     "pixels (is it increasing everywhere on [0, 1]?)")
    if scores["mae"] < 0.1:
        raise Wrong(f"MAE is only {scores['mae']:.3f}: an affine change a·d + b is undone by "
                     "the min–max normalisation; bend the curve (e.g. a power)")


@register("01.3", "auroc(scores, positive): P(a random positive scores above a random "
                   "negative), ties counting ½", "code",
           "compare every positive with every negative (np.subtract.outer), or rank the scores")
def _check_01_3(fn):
    from sklearn.metrics import roc_auc_score  # heavy: seconds to import, one check uses it

    rng = np.random.default_rng(7)
    for n in (40, 200):
        pos = rng.random(n) < 0.35
        s = np.round(rng.normal(size=n) + pos, 1)  # rounded: ties on purpose
        close_to(call(fn, s.copy(), pos.copy()), roc_auc_score(pos, s), 1e-6, "auroc", mistakes={
            "ties are counted as losses: a tie between a positive and a negative counts one "
            "half": (np.subtract.outer(s[pos], s[~pos]) > 0).mean()})


written("01.4", "Premise: does depth similarity predict 'same class'? Predict, then run the "
                 "premise cell with and without the sky", "experiment",
         "the sky is one class at one depth (the far plane): what does that do to the AUROC?")
