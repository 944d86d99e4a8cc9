"""Chapter 06's figures, drawn from a study's results (`depthg_lib.study`, results.json)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

COLOURS = {"stego": "#4c72b0", "depth": "#dd8452", "fps": "#55a868", "depthg": "#c44e52"}


def _style(arm: str) -> dict:
    base, _, fidelity = arm.partition("-")
    return {"color": COLOURS.get(base, "grey"),
            "linestyle": "-" if fidelity == "corrected" else "--"}


def validation_curves(results: dict):
    """Tune-split probe mIoU against training step, mean over seeds, one line per arm: has
    training reached a plateau?"""
    curves = results.get("validation", {}).get("curves", {})
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for arm, c in curves.items():
        for ax, key in zip(axes, ("val_cluster_miou", "val_linear_miou")):
            ax.plot(c["step"], c[key], marker="o", ms=3, label=arm, **_style(arm))
    knob = results["validation"].get("knob")
    for ax, title in zip(axes, ("cluster probe", "linear probe")):
        ax.set_xlabel("training step")
        ax.set_ylabel("mIoU on tune (%)")
        ax.set_title(f"{title}, tune split ({results['knob']['name']} {knob})")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def knob_effect(results: dict, metric: str = "unsup"):
    """Paired differences against STEGO (95 % CI) at each knob setting, one line per arm."""
    knobs = results["knob"]["settings"]
    comparisons = {name: by_knob for name, by_knob in results.get("ci95", {}).items()
                   if name.split(" vs ")[1].startswith("stego-")}
    if not comparisons:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    x = np.array([float(k) for k in knobs])
    width = 0.012 * max(1.0, x.max() - x.min()) if len(x) > 1 else 0.02
    for i, (name, by_knob) in enumerate(comparisons.items()):
        arm = name.split(" vs ")[0]
        pts = [(float(k), by_knob[k][metric]) for k in knobs if metric in by_knob.get(k, {})]
        if not pts:
            continue
        xs = np.array([p[0] for p in pts]) + (i - (len(comparisons) - 1) / 2) * width
        d = np.array([p[1]["diff"] for p in pts])
        err = np.array([[p[1]["diff"] - p[1]["lo"], p[1]["hi"] - p[1]["diff"]] for p in pts]).T
        ax.errorbar(xs, d, yerr=err, marker="o", capsize=4, label=f"{arm} − STEGO",
                    **_style(arm))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{results['knob']['name']} (share of things wearing the ground's look)")
    ax.set_ylabel(f"{'unsupervised' if metric == 'unsup' else 'linear'} mIoU difference")
    ax.set_title("What each ingredient adds over STEGO (report split, 95 % CI)")
    ax.set_xticks(x)
    pad = max(0.1, 0.15 * (x.max() - x.min()))
    ax.set_xlim(x.min() - pad, x.max() + pad)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def arm_table_figure(results: dict):
    """Report-split unsupervised mIoU per arm and baseline at each knob: dots are seeds."""
    knobs = results["knob"]["settings"]
    arms = list(results["arms"])
    if not arms:
        return None
    fig, axes = plt.subplots(1, len(knobs), figsize=(5.5 * len(knobs), 3.8), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        names = arms + ["kmeans_raw_train_fit", "kmeans_raw_transductive"]
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
        short = [n.replace("kmeans_raw_train_fit", "k-means\n(train fit)")
                 .replace("kmeans_raw_transductive", "k-means\n(transd.)")
                 .replace("-", "\n") for n in names]
        ax.set_xticks(range(len(names)), short, fontsize=7)
        ax.set_ylabel("unsupervised mIoU, report (%)")
        ax.set_title(f"{results['knob']['name']} {knob}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
