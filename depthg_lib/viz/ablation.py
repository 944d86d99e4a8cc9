"""Chapter 06's figures, drawn from a study's results (`depthg_lib.study`, results.json)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import titled

COLOURS = {"stego": "#4c72b0", "depth": "#dd8452", "fps": "#55a868", "depthg": "#c44e52"}
KNOB_LABELS = {"camouflage": "camouflage (share of things wearing the ground's look)",
               "nuisance": "nuisance strength (× the clean features' mean norm)"}


def _style(arm: str) -> dict:
    base, _, fidelity = arm.partition("-")
    return {"color": COLOURS.get(base, "grey"),
            "linestyle": "-" if fidelity == "corrected" else "--"}


def validation_curves(results: dict):
    """Tune-split probe mIoU against training step, mean over seeds, a line per arm: a plateau?"""
    curves = results.get("validation", {}).get("curves", {})
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    knob = f"{results['knob']['name']} {results['validation'].get('knob')}"
    for ax, probe in zip(axes, ("cluster", "linear")):
        for arm, c in curves.items():
            ax.plot(c["step"], c[f"val_{probe}_miou"], marker="o", ms=3, label=arm, **_style(arm))
        ax.set(xlabel="training step", ylabel="mIoU on tune (%)",
               title=f"{probe} probe, tune split ({knob})")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    return titled(fig)


def _knob_axis(results: dict, which: str) -> list[tuple[float, str]]:
    """(x, key) of the settings along one knob: `camouflage` (no nuisance) or `nuisance`
    (at the first camouflage setting, nuisance 0 included)."""
    keys = results["knob"]["settings"]
    cam = results["knob"].get("camouflage") or {k: float(k) for k in keys}
    nui = results["knob"].get("nuisance") or {}
    if which == "camouflage":
        return [(float(cam[k]), k) for k in keys if not nui.get(k)]
    return [(float(nui.get(k, 0.0)), k) for k in keys if cam[k] == cam[keys[0]]]


def knob_effect(results: dict):
    """The study's answers along each knob (camouflage, nuisance), 95 % CIs on the report
    split: each head minus k-means on the raw features (fitted on train), and DepthG − STEGO."""
    comparisons = {name: by_knob for name, by_knob in results.get("ci95", {}).items()
                   if name.endswith(" vs kmeans_raw_train_fit")
                   or name.split(" vs ")[1].startswith("stego-")}
    if not comparisons:
        return None
    panels = [w for w in KNOB_LABELS if len(_knob_axis(results, w)) > 1] or ["camouflage"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False,
                             sharey=True)
    for ax, which in zip(axes[0], panels):
        axis = _knob_axis(results, which)
        xs_all = np.array([x for x, _ in axis]) if axis else np.zeros(1)
        span = max(1.0, float(xs_all.max() - xs_all.min()))
        for i, (name, by_knob) in enumerate(comparisons.items()):
            a, b = name.split(" vs ")
            pts = [(x, by_knob[k]["unsup"]) for x, k in axis if "unsup" in by_knob.get(k, {})]
            if not pts:
                continue
            x, ci = zip(*pts)
            d = np.array([c["diff"] for c in ci])
            err = np.array([[c["diff"] - c["lo"], c["hi"] - c["diff"]] for c in ci]).T
            label = f"{a} − {b}".replace("kmeans_raw_train_fit", "k-means (train fit)")
            style = _style(a) | ({"linestyle": ":"} if b == "kmeans_raw_train_fit" else {})
            dx = (i - (len(comparisons) - 1) / 2) * 0.025 * span
            ax.errorbar(np.array(x) + dx, d, yerr=err, marker="o", capsize=4, label=label,
                        **style)
        ax.axhline(0, color="black", lw=0.8)
        pad = 0.12 * span
        ax.set(xticks=xs_all, xlim=(xs_all.min() - pad, xs_all.max() + pad),
               xlabel=KNOB_LABELS[which], title=f"along {which} (report split, 95 % CI)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("unsupervised mIoU difference (points)")
    axes[0][-1].legend(fontsize=7)
    return titled(fig)


def arm_table_figure(results: dict):
    """Report-split unsupervised mIoU per arm and baseline at each knob: dots are seeds."""
    knobs = results["knob"]["settings"]
    arms = list(results["arms"])
    if not arms:
        return None
    cols = min(2, len(knobs))
    rows = -(-len(knobs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 + 1.2 * (len(arms) + 2) * cols,
                                                  3.6 * rows), squeeze=False, sharey=True)
    labels = results.get("knob", {}).get("labels", {})
    for ax in axes.flat[len(knobs):]:
        ax.set_visible(False)
    names = arms + ["kmeans_raw_train_fit", "kmeans_raw_transductive"]
    short = arms + ["k-means, train fit", "k-means, transductive"]
    for ax, knob in zip(axes.flat, knobs):
        for i, name in enumerate(names):
            if name in results["arms"]:
                vals = results["arms"][name].get(knob, {}).get("unsup", [])
                colour = _style(name)["color"]
            else:
                vals = results.get("baselines_per_seed", {}).get(name, {}).get(knob, [])
                colour = "black"
            if vals:
                ax.bar(i, np.mean(vals), color=colour, alpha=0.6)
                ax.scatter(np.full(len(vals), i), vals, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(names)), short, fontsize=7, rotation=35, ha="right",
                      rotation_mode="anchor")
        ax.set_title(labels.get(knob, f"{results['knob']['name']} {knob}"), fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel("unsupervised mIoU, report (%)")
    return titled(fig)
