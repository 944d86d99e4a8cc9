"""Exercises of chapter 00 · Setup and data: their self-checks (`exercises.check("00.1", ...)`)."""

from __future__ import annotations

import numpy as np

from ..metrics import scores
from .core import IGNORE, as_tuple, call, close_to, register, toy_labels, written


@register("00.1", "class_shares(labels, n_classes): the share of labelled pixels per class",
           "code", "count with np.bincount over the pixels that are not 255, divide by their "
                   "number; classes that never occur get 0")
def _check_00_1(fn):
    for seed in (0, 1):
        lab = toy_labels(seed, classes=4)
        counts = np.bincount(lab[lab != IGNORE].astype(np.int64), minlength=6)  # 4, 5: never seen
        close_to(call(fn, lab.copy(), 6), counts / counts.sum(), 1e-6, "class_shares",
                 mistakes={"the shares sum to less than 1: ignored pixels (255) are in the "
                           "denominator": counts / lab.size})


@register("00.2", "majority_baseline(shares): Acc and mIoU (%) of painting every pixel with "
                   "the most frequent class", "pen",
           "the majority class has IoU = its share (every other pixel is a false positive); "
           "every other class that occurs has IoU 0; classes that never occur have no IoU")
def _check_00_2(fn):
    rng = np.random.default_rng(2)
    cases = [np.array([0.5, 0.2, 0.2, 0.1, 0.0, 0.0])]
    for _ in range(3):
        s = rng.random(7) * (rng.random(7) < 0.7)
        s[rng.integers(7)] += 0.1
        cases.append(s / s.sum())
    for shares in cases:
        counts = np.round(shares * 1_000_000).astype(np.int64)
        hist = np.zeros((len(shares), len(shares)), dtype=np.int64)
        hist[int(np.argmax(counts))] = counts  # every pixel predicted as the majority class
        ref = scores(hist, hungarian=False)
        got = as_tuple(call(fn, shares.copy()), 2, "a pair (acc, miou), both in percent")
        close_to(got[0], ref["acc"], 0.01, "acc (percent)")
        close_to(got[1], ref["miou"], 0.01, "miou (percent)", mistakes={
            "mIoU averages only over classes that occur: a class with no pixels (and never "
            "predicted) has no IoU": ref["acc"] / len(shares)})


@register("00.3", "thing_share(labels, thing_ids): the share of labelled pixels on things",
           "code", "np.isin(labels, thing_ids) over the pixels that are not 255")
def _check_00_3(fn):
    for seed in (3, 4):
        lab = toy_labels(seed, classes=6, ignore_share=0.2)
        on_things = np.isin(lab, (1, 4))
        close_to(call(fn, lab.copy(), (1, 4)), on_things[lab != IGNORE].mean(), 1e-6,
                 "thing_share", mistakes={"ignored pixels (255) are counted: leave them out of "
                                          "the denominator": on_things.mean()})


written("00.4", "Why may labels be used to *measure* but never to *train*?", "pen",
         "think of what 'unsupervised' promises and of which number a label would change")
