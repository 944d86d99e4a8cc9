"""The study's results file, its tables and sentences, and its figures — all read from data."""

from __future__ import annotations

import datetime
import os
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .. import ablation
from ..config import REPO_ROOT, Profile
from ..env import machine_name
from ..io import atomic_path, load_json, save_json
from ..models import profile_weights_identity
from ..viz import ablation as viz
from .claims import claims, prediction_checks, setting_label
from .readme import (
    BASELINES,
    ci_lines,
    head_margin,
    plateau_line,
    readme_summary,
    regime_table,
    results_table,
    study_markdown,
)
from .splits import KNOB, KNOB_MEANING, knob_key, nuisance_spec, split_size
from .stats import METRICS, last_quarter, paired_bootstrap, verdict

NUISANCE_MEANING = (
    "structured, class-free signal added to the frozen features after the backbone "
    "(depthg_lib.nuisance; an experimental device of the course, not part of DepthG): a "
    "per-source-image offset, a position-dependent pattern over the patch grid and a few "
    "high-norm outlier tokens, each of size strength × the clean features' mean norm "
    "(outliers 4×), in low-rank subspaces; the same for every arm and baseline")
# the chapters and the command line import the tables and claims from here
__all__ = ["BASELINES", "RESULT_KEYS", "ci_lines", "claims", "head_margin", "plateau_line",
           "prediction_checks", "publish_results", "readme_summary", "regime_table",
           "results_table", "setting_label", "study_markdown", "summarize", "write_figures"]
RESULT_KEYS = ("splits", "seeds", "knob", "arms", "baselines", "ci95", "command", "machine",
               "date")


def reference_arm(profile: Profile, arms: list[str]) -> str:
    """The arm whose head the baseline table shows: DepthG in the profile's fidelity."""
    want = f"depthg-{profile.fidelity}"
    return want if want in arms else arms[-1]


def _rows(study, kind: str, name: str, knob) -> list[dict]:
    """Stored rows of the current identities, one per seed of this study, in seed order."""
    found = []
    for seed in study.seeds:
        identity = (study.arm_identity(name, knob, seed) if kind == "arm"
                    else study.baseline_identity(name, knob, seed))
        row = study.store.find(identity)
        if row is not None:
            found.append(row)
    return found


def _stack(study, rows: list[dict], key: str) -> np.ndarray:
    return np.stack([study.store.hists(r)[key] for r in rows])




def read_curve(log: Path) -> list[tuple[int, float, float]]:
    """(updates done, tune cluster mIoU, tune linear mIoU) of each validation in a run's log."""
    import csv

    if not log.exists():
        return []
    with open(log, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val_cluster_miou")]
    return [(int(r["step"]) + 1, float(r["val_cluster_miou"]), float(r["val_linear_miou"]))
            for r in rows]


def validation_curves(study, knob) -> dict:
    """Per arm: validation steps and the mean over seeds of the tune-split probe scores."""
    curves = {}
    for arm in study.arms:
        per_seed = []
        for seed in study.seeds:
            curve = read_curve(study.run_dir(arm, knob, seed) / "log.csv")
            if curve:
                per_seed.append(curve)
        if not per_seed:
            continue
        n = min(len(c) for c in per_seed)
        arr = np.array([c[:n] for c in per_seed])  # (seeds, points, 3)
        curves[arm] = {"step": arr[0, :, 0].astype(int).tolist(),
                       "val_cluster_miou": np.round(arr[:, :, 1].mean(0), 3).tolist(),
                       "val_linear_miou": np.round(arr[:, :, 2].mean(0), 3).tolist(),
                       "seeds": len(per_seed)}
        values = arr[:, :, 1].mean(0)
        quarter = last_quarter(n)
        curves[arm]["gain_last_quarter"] = round(float(values[-1] - values[-1 - quarter]), 3) \
            if n > quarter else None
    return curves


def _placement(study, knob) -> dict | None:
    try:
        return study.placement(knob) if (knob in study.knob_data
                                         or not study.write_only) else None
    except KeyError:
        return None


def regime_summary(study) -> dict:
    """The regime check: per arm and regime, the schedule, the tune and report scores and how
    much the tune curve still moved over its last quarter."""
    out = {}
    for arm, by_regime in study.regime_rows.items():
        for name, row in by_regime.items():
            curve = read_curve(Path(row["run_dir"]) / "log.csv")
            quarter = last_quarter(len(curve))
            gain = (round(curve[-1][1] - curve[-1 - quarter][1], 3)
                    if len(curve) > quarter else None)
            out.setdefault(arm, {})[name] = {
                "steps": row["steps"], "depth_decay_every": row["depth_decay_every"],
                "fps_sample_decay_every": row["fps_sample_decay_every"],
                "tune_unsup": round(row["tune_unsup"], 3),
                "tune_linear": round(row["tune_linear"], 3),
                "report_unsup": round(row["unsup"], 3), "report_linear": round(row["linear"], 3),
                "tune_curve": [[c[0], round(c[1], 3), round(c[2], 3)] for c in curve],
                "tune_gain_last_quarter": gain, "seed": row["seed"]}
    return out


def summarize(study) -> dict:
    """The results file: splits, seeds, knob, arms, baselines, paired CIs, premise, curves."""
    p = study.profile
    arms, baselines, per_seed, ci95 = {}, {}, {}, {}
    ref = reference_arm(p, study.arms)
    complete = True
    for knob in study.knobs:
        key = knob_key(knob)
        rows = {arm: _rows(study, "arm", arm, knob) for arm in study.arms}
        base_rows = {name: _rows(study, "baseline", name, knob)
                     for name in ("kmeans_raw_train_fit", "kmeans_raw_transductive",
                                  "linear_raw")}
        complete &= all(len(r) == len(study.seeds) for r in rows.values())
        for arm, rs in rows.items():
            arms.setdefault(arm, {})[key] = {
                "unsup": [round(r["unsup"], 3) for r in rs],
                "linear": [round(r["linear"], 3) for r in rs],
                "kmeans_codes": [round(r["kmeans_codes"], 3) for r in rs],
                "seeds": [r["seed"] for r in rs]}
        values = {name: [r["unsup" if "kmeans" in name else "linear"] for r in rs]
                  for name, rs in base_rows.items()}
        values["head_cluster_probe"] = [r["unsup"] for r in rows.get(ref, [])]
        values["head_kmeans_codes"] = [r["kmeans_codes"] for r in rows.get(ref, [])]
        values["head_linear_probe"] = [r["linear"] for r in rows.get(ref, [])]
        for name, vals in values.items():
            baselines.setdefault(name, {})[key] = round(float(np.mean(vals)), 3) if vals \
                else None
            per_seed.setdefault(name, {})[key] = [round(v, 3) for v in vals]
        for pair, ci in paired_intervals(study, ref, rows, base_rows).items():
            ci95.setdefault(pair, {})[key] = ci
    done = sum(len(v2["unsup"]) for v in arms.values() for v2 in v.values())
    return {
        "schema": 1,
        "profile": p.name,
        "objective_version": study.objective_version,
        "complete": bool(complete),
        "runs_done": done,
        "runs_total": len(study.seeds) * len(study.knobs) * len(study.arms),
        **setting_facts(study),
        "arms": arms,
        "arm_labels": {a: ablation.ARMS[a] for a in study.arms},
        "reference_arm": ref,
        "baselines": baselines,
        "baselines_per_seed": per_seed,
        "baseline_labels": BASELINES,
        "ci95": ci95,
        **run_facts(study),
    }


def paired_pairs(study, ref: str, rows: dict) -> list[tuple[str, str, str, str]]:
    """(a, b, b's kind, metric) for every paired difference the results report."""
    pairs = []
    for arm in study.arms:
        partner = ablation.stego_partner(arm)
        if arm != partner and partner in rows:
            pairs += [(arm, partner, "arm", m) for m in ("unsup", "linear")]
    if {"depthg-corrected", "depthg-released"} <= set(study.arms):
        pairs += [("depthg-corrected", "depthg-released", "arm", m)
                  for m in ("unsup", "linear")]
    for arm in dict.fromkeys([ref, f"stego-{study.profile.fidelity}"]):
        if arm in rows and rows[arm]:
            pairs += [(arm, "kmeans_raw_train_fit", "baseline", "unsup"),
                      (arm, "kmeans_raw_transductive", "baseline", "unsup"),
                      (arm, "linear_raw", "baseline", "linear")]
    return pairs


def paired_intervals(study, ref: str, rows: dict, base_rows: dict) -> dict:
    """"a vs b" → metric → paired bootstrap interval, over the seeds both sides have."""
    out = {}
    for a, b, kind_b, metric in paired_pairs(study, ref, rows):
        ra = {r["seed"]: r for r in rows[a]}
        rb = {r["seed"]: r for r in (rows[b] if kind_b == "arm" else base_rows[b])}
        seeds = [s for s in study.seeds if s in ra and s in rb]
        if not seeds:
            continue
        ha = _stack(study, [ra[s] for s in seeds], metric)
        hb = _stack(study, [rb[s] for s in seeds], metric)
        ci = paired_bootstrap(ha, hb, METRICS[metric], n_boot=study.n_boot, seed=0)
        ci = {k: round(v, 3) if isinstance(v, float) else v for k, v in ci.items()}
        ci["verdict"] = verdict(ci)
        out.setdefault(f"{a} vs {b}", {})[metric] = ci
    return out


def setting_facts(study) -> dict:
    """What the study ran on: its splits, seeds, knob settings and nuisance, the regime check."""
    p = study.profile
    return {
        "splits": {"train": p.synth_seed, "tune": p.tune_seed, "report": p.report_seed,
                   "n_train_images": p.synth_n_train, "n_tune_images": split_size(p, "tune"),
                   "n_report_images": split_size(p, "report"), "image_size": p.synth_size},
        "seeds": list(study.seeds),
        "knob": {"name": KNOB, "settings": [knob_key(k) for k in study.knobs],
                 "meaning": KNOB_MEANING,
                 "labels": {knob_key(k): k.label for k in study.knobs},
                 "camouflage": {knob_key(k): k.camouflage for k in study.knobs},
                 "nuisance": {knob_key(k): k.nuisance for k in study.knobs}},
        "nuisance": {"meaning": NUISANCE_MEANING, "spec": nuisance_spec(1.0),
                     "scale": {knob_key(k): round(study.nuisance(k).scale, 4)
                               for k in study.knobs if k.nuisance and k in study.knob_data}},
        "regime": regime_summary(study),
    }


def run_facts(study) -> dict:
    """How the study ran: intervals, premise, curves, shifts, training, backbone, machine."""
    p = study.profile
    return {
        "ci_method": (f"paired bootstrap over training seeds and report images "
                      f"({study.n_boot} draws, percentile interval); unsupervised mIoU is "
                      "re-matched (Hungarian) in every draw"),
        "premise": {knob_key(k): study.premise(k) for k in study.knobs
                    if study.store.find(study.premise_identity(k)) is not None},
        "validation": {"split": "tune", "knob": knob_key(study.knobs[0]),
                       "curves": validation_curves(study, study.knobs[0])},
        "shifts": shift_facts(study),
        "training": training_facts(study),
        "backbone": {"name": p.backbone, "weights_identity": profile_weights_identity(p),
                     "saw": backbone_saw(p)},
        "command": study.command,
        "machine": machine_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "seconds_this_process": round(time.time() - study.started),
        "seconds_stored_runs": round(sum(r.get("seconds", 0) for r in study.store.rows)),
    }


def shift_facts(study) -> dict:
    """The loss shifts: how they were tuned, the profile's, the offsets and the placed ones."""
    p = study.profile
    return {**study.tuning,
            "profile": {"shift_intra": p.shift_intra, "shift_inter": p.shift_inter,
                        "shift_neg": p.shift_neg},
            "offsets": {knob_key(k): {a: study.offsets.get((k.key, a), 0.0)
                                      for a in study.arms} for k in study.knobs},
            "placed": {knob_key(k): {"shifts": r["shifts"], "f": r["f"]}
                       for k in study.knobs if k.nuisance
                       for r in [_placement(study, k)] if r}}


def training_facts(study) -> dict:
    """Every arm's training settings (steps, batch, schedules)."""
    p = study.profile
    return {"steps": study.steps, "batch_size": p.batch_size, "lr": p.lr,
            "val_every": study.val_every, "res": p.res, "dim": p.dim,
            "samples": p.samples, "depth_backend": p.depth_backend,
            "depth_decay_every": ablation.schedule_every(
                p.depth_decay_share, study.steps, p.depth_decay_every),
            "depth_decay_factor": p.depth_decay_factor,
            "fps_sample_decay_every": ablation.schedule_every(
                p.fps_sample_decay_share, study.steps, p.fps_sample_decay_every),
            "fps_sample_decay_factor": p.fps_sample_decay_factor}


def backbone_saw(profile: Profile) -> str:
    """What the frozen backbone was trained on, in words (from the weights manifest)."""
    if not profile.backbone.startswith("embedded"):
        return f"{profile.backbone}: its own pretraining data (not SynthScenes)"
    manifest = Path(__file__).resolve().parent.parent / "weights" / "manifest.json"
    entry = load_json(manifest).get("vit", {}) if manifest.exists() else {}
    training = entry.get("training", {})
    data = training.get("data", {})
    seen = (f"{data.get('n_train', '?')} SynthScenes images of seed {data.get('seed', '?')} at "
            f"{data.get('size', '?')} px, {training.get('steps', '?')} self-supervised steps, "
            "labels never used" if data else "SynthScenes (pretraining seed)")
    return (f"{seen}; all without camouflage (the knob is newer than the weights) and no new "
            "pretraining for this study, so camouflaged things are new to the backbone")


def write_figures(results: dict, folder: Path) -> list[Path]:
    """The validation curves and DepthG − STEGO against the knob, as PNGs in `folder`."""
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in (("validation", viz.validation_curves), ("knob", viz.knob_effect),
                       ("arms", viz.arm_table_figure)):
        fig = draw(results)
        if fig is None:
            continue
        path = folder / f"study_{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def publish_results(results: dict, results_path: Path, figures: list[Path],
                    docs_dir: Path) -> None:
    """Copy the results file and figures to `docs_dir` (docs/study) and figures/."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    if results_path.resolve() != (docs_dir / "results.json").resolve():
        save_json(docs_dir / "results.json", results)
    with atomic_path(docs_dir / "README.md") as tmp:
        tmp.write_text(study_markdown(results) + "\n")
    fig_dir = REPO_ROOT / "figures"
    for fig in figures:
        for target in (docs_dir / fig.name, fig_dir / fig.name):
            if fig.resolve() != target.resolve():
                shutil.copyfile(fig, target)






























