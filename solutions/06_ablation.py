"""Reference solutions, chapter 06 · The study (`depthg_lib.exercises` checks them)."""

import math

import numpy as np
from scipy import stats


def paired_interval(a, b):
    """06.1 — pair the arms by seed: what a seed does to both (its crops order, its init)
    cancels in a − b, so the interval is that of the per-seed differences."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = len(d)
    half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def bootstrap_interval(d, n_boot, seed):
    """06.2 — resample the seeds with replacement; the interval is the middle 95 % of the
    resampled means."""
    d = np.asarray(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = rng.choice(d, (n_boot, len(d)), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def seeds_needed(sd, half_width):
    """06.3 — the interval's half-width t(0.975, n − 1)·sd/√n shrinks with n; count up."""
    n = 2
    while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n


ANSWERS = {"06.1": paired_interval, "06.2": bootstrap_interval, "06.3": seeds_needed}

WRITTEN = {
    "06.1": "Paired, the seed-to-seed swings that both arms share (a lucky initialisation, an "
            "easy order of crops) cancel, so the interval is usually much narrower than the "
            "unpaired one; that is why the study runs every arm with the same seeds.",
    "06.2": "The bootstrap makes no normality assumption, but with three seeds it can only "
            "reshuffle three numbers: its interval is then too narrow. The study also "
            "resamples report images, the other source of noise.",
    "06.3": "With a seed-to-seed sd of the paired difference of 1 point, ± 1 point needs 7 "
            "seeds, ± 0.5 needs 18: a 0.5-point difference between two single runs is no "
            "evidence either way.",
    "06.4": "If depth helps only when appearance is ambiguous, the premise's gain (depth over "
            "features) grows with camouflage and DepthG − STEGO should follow it. If the "
            "interval stays around 0 while the premise gain grows, the loss does not use "
            "the information that depth carries; if both stay flat, the knob does not make "
            "depth more informative.",
}
