"""Exercises of chapter 06 · The study: their self-checks (`exercises.check("06.1", ...)`)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .core import Wrong, as_array, as_tuple, call, close_to, register, written


@register("06.1", "paired_interval(a, b): mean of a − b over seeds and its 95 % t interval, "
                  "paired by seed", "code",
          "d = a − b per seed; mean ± t(0.975, n − 1)·sd(d, ddof=1)/√n "
          "(scipy.stats.t.ppf)")
def _check_06_1(fn):
    rng = np.random.default_rng(61)
    for n in (3, 5, 8):
        seed_effect = rng.normal(25, 3, n)  # what both arms share in a seed
        a = seed_effect + 1.0 + rng.normal(0, 0.4, n)
        b = seed_effect + rng.normal(0, 0.4, n)
        mean, se = (a - b).mean(), (a - b).std(ddof=1) / math.sqrt(n)
        half = stats.t.ppf(0.975, n - 1) * se
        unpaired = stats.ttest_ind(a, b).confidence_interval(0.95)
        got = as_tuple(call(fn, a.copy(), b.copy()), 3, "a triple (diff, lo, hi)")
        close_to([float(as_array(v)) for v in got], (mean, mean - half, mean + half), 1e-6,
                 f"(diff, lo, hi) for {n} seeds", mistakes={
            "that interval treats the arms as independent samples: pair them by seed (what a "
            "seed does to both arms cancels in a − b)": (mean, unpaired.low, unpaired.high),
            "1.96 is the normal quantile: with a few seeds use Student's t with n − 1 degrees "
            "of freedom": (mean, mean - 1.96 * se, mean + 1.96 * se)})


@register("06.2", "bootstrap_interval(d, n_boot, seed): the 95 % percentile bootstrap "
                  "interval of the mean of per-seed differences d", "code",
          "draw len(d) values WITH replacement n_boot times (np.random.default_rng(seed)), "
          "take each draw's mean, then np.percentile(means, [2.5, 97.5])")
def _check_06_2(fn):
    rng = np.random.default_rng(62)
    for n in (5, 12):
        d = rng.normal(0.8, 1.5, n)
        draws = np.random.default_rng(0).choice(d, (20_000, n), replace=True).mean(1)
        want = np.percentile(draws, [2.5, 97.5])
        got = as_tuple(call(fn, d.copy(), 4000, 1), 2, "a pair (lo, hi)")
        lo, hi = (float(as_array(v)) for v in got)
        if math.isclose(lo, hi, abs_tol=1e-9):
            raise Wrong("the interval has no width: resample WITH replacement (a draw without "
                        "replacement is the same seeds again, so every mean is equal)")
        tol = 0.1 * d.std(ddof=1)  # Monte-Carlo error of 4000 draws is far below this
        close_to([lo, hi], want, tol, f"(lo, hi) for {n} differences")


@register("06.3", "seeds_needed(sd, half_width): the fewest seeds whose 95 % t interval of the "
                  "mean paired difference is at most ± half_width", "pen",
          "the smallest n ≥ 2 with t(0.975, n − 1)·sd/√n ≤ half_width; try n = 2, 3, …")
def _check_06_3(fn):
    for sd, hw in ((1.0, 1.0), (1.5, 0.5), (2.0, 3.0), (0.8, 0.25)):
        n = 2
        while stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) > hw:
            n += 1
        got = int(round(float(as_array(call(fn, sd, hw)))))
        normal = max(2, math.ceil((1.96 * sd / hw) ** 2))
        if got == normal and normal != n:
            raise Wrong(f"sd {sd}, ± {hw}: {got} seeds is the normal approximation; with so few "
                        "seeds Student's t is wider — count again with t(0.975, n − 1)")
        if got != n:
            raise Wrong(f"sd {sd}, ± {hw}: you say {got} seeds, the t interval needs {n}")


written("06.4", "Add a camouflage setting: does DepthG − STEGO grow as appearance tells less? "
                "Predict, then run", "experiment",
        "copy study.yaml with study_knob: [0.0, 0.5, 1.0]; read the premise AUROCs beside "
        "each interval")
