"""Reference solutions, chapter 01 · Generate depth (`depthg_lib.exercises` checks them)."""

import numpy as np


def normalise(depth):
    """01.1 — per-image min–max normalisation to [0, 1]; a constant map becomes all zeros."""
    d = np.asarray(depth, dtype=np.float64)
    lo, hi = d.min(), d.max()
    if hi <= lo:
        return np.zeros_like(d)
    return (d - lo) / (hi - lo)


def distort(d):
    """01.2 — a strictly increasing bend of depth: the order of the pixels (Spearman) stays,
    the values (MAE) do not. For d uniform on [0, 1], mean |d⁴ − d| = 3/10."""
    return np.asarray(d, dtype=np.float64) ** 4


def auroc(scores, positive):
    """01.3 — P(score of a random positive > score of a random negative), a tie counting ½."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    diff = np.subtract.outer(s[pos], s[~pos])
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


ANSWERS = {"01.1": normalise, "01.2": distort, "01.3": auroc}

WRITTEN = {
    "01.2": "Spearman's ρ is the correlation of the *ranks*, so any strictly increasing "
            "function leaves it at 1; the MAE compares values, so a bend (here d⁴) moves it. "
            "An affine change a·d + b (a > 0) changes neither: the min–max normalisation "
            "undoes it. That is why ρ is the fair score for relative depth, and why the "
            "depth stored per image carries only the order and the relative spacing of "
            "depths, not metres.",
    "01.3": "AUROC = 0.5 means the score says nothing about the label, 1 means every positive "
            "scores above every negative. It does not depend on a threshold or on how many "
            "positives there are, which is why the premise test uses it for 'same class' "
            "pairs (a minority of the pairs).",
    "01.4": "Expect feature similarity to predict 'same class' better than depth similarity, "
            "and depth to add little on top of the features (the depth_gain the cell prints). "
            "With the sky included, depth looks better: every sky pixel sits at the far "
            "plane, so sky–sky pairs have identical depth and are the same class, and sky vs "
            "anything else differs a lot in depth — an easy win that says nothing about the "
            "classes on the ground. Excluding the sky asks the harder question DepthG relies "
            "on. A gain near zero means the depth term can at best repeat what F already "
            "says; a clearly positive gain is room for the depth term to help.",
}
