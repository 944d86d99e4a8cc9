"""Figures of a training run (chapter 04) from its `log.csv`: one row per step (validation
columns at validation steps only), first a row of step -1 with the untrained head's scores."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..errors import DepthGError
from . import titled

TERM_LABELS = {"pos_intra": "intra-image (self)", "pos_inter": "kNN positive",
               "neg_inter": "negatives", "depth": "depth"}


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """`log.csv` (or the training folder holding it) → column name → float array (NaN = empty)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.csv"
    if not path.exists():
        raise DepthGError(f"training log {path} does not exist; train first: "
                          "python -m depthg_lib.train --profile <profile>")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DepthGError(f"training log {path} holds no steps yet")
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
            for k in rows[0]}


def updates(log: dict) -> dict[str, np.ndarray]:
    """Only the rows of training steps (drops the untrained head's validation row)."""
    keep = log["step"] >= 0
    return {k: v[keep] for k, v in log.items()}


def _loss_terms(ax, log: dict) -> None:
    """Each DepthG loss term (unweighted) and the weighted total, against training steps."""
    for key, label in TERM_LABELS.items():
        if key in log and np.isfinite(log[key]).any():
            ax.plot(log["step"], log[key], label=label, lw=1)
    ax.plot(log["step"], log["loss"], color="k", lw=1.5, label="weighted total")
    title = "DepthG loss terms"
    if "depth" in log and "weight_depth" in log and np.isfinite(log["depth"]).any():
        share = log["weight_depth"] * log["depth"]  # the depth term's part of the total
        ax.plot(log["step"], share, color="C3", ls=":", lw=1.2, label="w_depth · depth (weighted)")
        ax.plot(log["step"], log["loss"] - share, color="0.45", ls="--", lw=1.2,
                label="weighted total without depth")
        w = log["weight_depth"]
        if w[0] > 0 and w[-1] < w[0]:
            title += (f"\nthe depth weight decays ×{w[-1] / w[0]:.2f} (lower left): the total "
                      "moves with w_depth · depth")
    ax.set(xlabel="step (0 = before the first update)", ylabel="loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def _probe_scores(ax, log: dict, baselines: Mapping[str, float] | None) -> None:
    """Validation mIoU of the linear and cluster probes, `baselines` as horizontal lines."""
    if "val_linear_miou" not in log or not np.isfinite(log["val_linear_miou"]).any():
        ax.text(0.5, 0.5, "no validation crops", ha="center", va="center", transform=ax.transAxes)
        return
    keep = np.isfinite(log["val_linear_miou"])
    done = log["step"][keep] + 1  # updates done: 0 = the untrained head
    for key, label, style in (("val_linear_miou", "linear mIoU", "C0-"),
                              ("val_cluster_miou", "cluster mIoU", "C1-")):
        ax.plot(done, log[key][keep], style, marker="o", ms=3, label=label)
    for k, (name, value) in enumerate((baselines or {}).items()):
        ax.axhline(value, color=f"C{k + 2}", ls=":", lw=1.5, label=f"{name} (mIoU)")
    if done.min() > 0:
        ax.text(0.01, 0.02, "this log has no score of the untrained head", fontsize=7,
                color="0.4", transform=ax.transAxes)
    ax.set(xlabel="updates done (0 = untrained head)", ylabel="%",
           title="probes on validation crops")
    ax.legend(fontsize=8)


def plot_training(log: dict, title: str = "", baselines: Mapping[str, float] | None = None):
    """The four panels of a run (`read_log`), `baselines` (name → mIoU %) on the probe scores."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.0))
    steps = updates(log)  # the untrained head's row holds scores only
    _loss_terms(axes[0, 0], steps)
    axes[0, 1].plot(steps["step"], steps["linear_loss"], label="linear probe (CE)")
    axes[0, 1].plot(steps["step"], steps["cluster_loss"], label="cluster probe")
    axes[0, 1].set(xlabel="step", title="probe losses")
    axes[0, 1].legend(fontsize=8)
    schedule = axes[1, 0]
    schedule.step(steps["step"], steps["samples"], where="post", color="C0", lw=3, alpha=0.6)
    schedule.set_ylabel("S (sample grid S×S)", color="C0")
    schedule.set(xlabel="step", title="schedules: S (solid), depth weight (dashed)")
    right = schedule.twinx()  # dashed on top: the two often change at the same step
    right.step(steps["step"], steps["weight_depth"], where="post", color="C3", ls="--")
    right.set_ylabel("depth weight", color="C3")
    _probe_scores(axes[1, 1], log, baselines)
    return titled(fig, title)
