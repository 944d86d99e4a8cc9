"""The study's results file (schema: `RESULT_KEYS`) and its figures, built from the store."""

from __future__ import annotations

import csv
import datetime
import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .. import ablation
from ..config import REPO_ROOT, Profile
from ..embedded import manifest_path
from ..env import machine_name
from ..io import atomic_path, load_json, save_json
from ..losses import OBJECTIVE_VERSION
from ..models import profile_weights_identity
from ..viz import ablation as viz
from .readme import BASELINES, study_markdown
from .scoring import METRICS, RAW_BASELINES, last_quarter, paired_bootstrap, verdict
from .shifts import SHIFT_NAMES
from .splits import KNOB, KNOB_MEANING, nuisance_spec, split_size

NUISANCE_MEANING = (
    "structured, class-free signal added to the frozen features after the backbone "
    "(depthg_lib.nuisance; an experimental device of the course, not part of DepthG): a "
    "per-source-image offset, a position-dependent pattern over the patch grid and a few "
    "high-norm outlier tokens, each of size strength × the clean features' mean norm "
    "(outliers 4×), in low-rank subspaces; the same for every arm and baseline")
SHIFTS_NOTE = ("clean features: the profile's shifts (tuned for the embedded ViT); each nuisance "
               "setting: the shifts placed by F's statistics on the training crops "
               "(study.shifts.placed_shifts), the same rule for every arm, not tuned further by "
               "training")
RESULT_KEYS = ("splits", "seeds", "knob", "arms", "baselines", "ci95", "command", "machine",
               "date")


def _rows(study, identity, name: str, knob) -> list[dict]:
    """Stored rows of the current `identity`, one per seed of this study, in seed order."""
    found = [study.store.find(identity(name, knob, seed)) for seed in study.seeds]
    return [row for row in found if row is not None]


def read_curve(log: Path) -> list[tuple[int, float, float]]:
    """(updates done, tune cluster mIoU, tune linear mIoU) of each validation in a run's log."""
    if not log.exists():
        return []
    with open(log, newline="") as fh:
        return [(int(r["step"]) + 1, float(r["val_cluster_miou"]), float(r["val_linear_miou"]))
                for r in csv.DictReader(fh) if r.get("val_cluster_miou")]


def gain_last_quarter(values) -> float | None:
    """How much a tune curve still moved over its last quarter (None: too short to say)."""
    quarter = last_quarter(len(values))
    return round(float(values[-1] - values[-1 - quarter]), 3) if len(values) > quarter else None


def validation_curves(study, knob) -> dict:
    """Per arm: validation steps and the mean over seeds of the tune-split probe scores."""
    curves = {}
    for arm in study.arms:
        per_seed = [c for c in (read_curve(study.run_dir(arm, knob, seed) / "log.csv")
                                for seed in study.seeds) if c]
        if not per_seed:
            continue
        n = min(len(c) for c in per_seed)
        arr = np.array([c[:n] for c in per_seed])  # (seeds, points, 3)
        cluster = arr[:, :, 1].mean(0)
        curves[arm] = {"step": arr[0, :, 0].astype(int).tolist(),
                       "val_cluster_miou": np.round(cluster, 3).tolist(),
                       "val_linear_miou": np.round(arr[:, :, 2].mean(0), 3).tolist(),
                       "seeds": len(per_seed), "gain_last_quarter": gain_last_quarter(cluster)}
    return curves


def regime_summary(study) -> dict:
    """Per arm and regime: schedule, tune and report scores, the tune curve's late gain."""
    out = {}
    for arm, by_regime in study.regime_rows.items():
        for name, row in by_regime.items():
            curve = read_curve(Path(row["run_dir"]) / "log.csv")
            out.setdefault(arm, {})[name] = {
                **{k: row[k] for k in ("steps", "depth_decay_every", "fps_sample_decay_every")},
                **{k: round(row[k], 3) for k in ("tune_unsup", "tune_linear")},
                "report_unsup": round(row["unsup"], 3), "report_linear": round(row["linear"], 3),
                "tune_gain_last_quarter": gain_last_quarter([c[1] for c in curve]),
                "seed": row["seed"]}
    return out


def stored_scores(study, ref: str) -> tuple[bool, dict, dict, dict, dict]:
    """Per setting: every arm's and baseline's stored scores, and the paired intervals."""
    arms, baselines, per_seed, ci95 = {}, {}, {}, {}
    complete = True
    for knob in study.knobs:
        key = knob.key
        rows = {arm: _rows(study, study.arm_identity, arm, knob) for arm in study.arms}
        base_rows = {b: _rows(study, study.baseline_identity, b, knob) for b in RAW_BASELINES}
        complete &= all(len(r) == len(study.seeds) for r in rows.values())
        for arm, rs in rows.items():
            arms.setdefault(arm, {})[key] = {
                **{m: [round(r[m], 3) for r in rs] for m in ("unsup", "linear", "kmeans_codes")},
                "seeds": [r["seed"] for r in rs]}
        for name, rs in base_rows.items():
            vals = [r["unsup" if "kmeans" in name else "linear"] for r in rs]
            baselines.setdefault(name, {})[key] = round(float(np.mean(vals)), 3) if vals else None
            per_seed.setdefault(name, {})[key] = [round(v, 3) for v in vals]
        for pair, ci in paired_intervals(study, ref, rows, base_rows).items():
            ci95.setdefault(pair, {})[key] = ci
    return complete, arms, baselines, per_seed, ci95


def summarize(study) -> dict:
    """The results file: what the study ran on, its scores and intervals, how it ran."""
    p, knobs = study.profile, study.knobs
    # the reference arm of the paired intervals: DepthG in the profile's fidelity
    ref = f"depthg-{p.fidelity}" if f"depthg-{p.fidelity}" in study.arms else study.arms[-1]
    complete, arms, baselines, per_seed, ci95 = stored_scores(study, ref)
    return {
        "schema": 1, "profile": p.name, "objective_version": OBJECTIVE_VERSION,
        "complete": complete,
        "runs_done": sum(len(v2["unsup"]) for v in arms.values() for v2 in v.values()),
        "runs_total": len(study.seeds) * len(knobs) * len(study.arms),
        "splits": {"train": p.synth_seed, "tune": p.tune_seed, "report": p.report_seed,
                   "n_train_images": p.synth_n_train, "n_tune_images": split_size(p, "tune"),
                   "n_report_images": split_size(p, "report"), "image_size": p.synth_size},
        "seeds": list(study.seeds),
        "knob": {"name": KNOB, "settings": [k.key for k in knobs],
                 "meaning": KNOB_MEANING, "labels": {k.key: k.label for k in knobs},
                 "camouflage": {k.key: k.camouflage for k in knobs},
                 "nuisance": {k.key: k.nuisance for k in knobs}},
        "nuisance": {"meaning": NUISANCE_MEANING, "spec": nuisance_spec(1.0),
                     "scale": {k.key: round(study.nuisance(k).scale, 4)
                               for k in knobs if k.nuisance and k in study.knob_data}},
        "regime": regime_summary(study),
        "arms": arms, "arm_labels": {a: ablation.ARMS[a] for a in study.arms},
        "reference_arm": ref, "baselines": baselines, "baselines_per_seed": per_seed,
        "baseline_labels": BASELINES, "ci95": ci95,
        "ci_method": (f"paired bootstrap over training seeds and report images "
                      f"({study.n_boot} draws, percentile interval); unsupervised mIoU is "
                      "re-matched (Hungarian) in every draw"),
        "premise": {k.key: study.premise(k) for k in knobs
                    if study.store.find(study.premise_identity(k)) is not None},
        "validation": {"split": "tune", "knob": knobs[0].key,
                       "curves": validation_curves(study, knobs[0])},
        "shifts": {  # the profile's, the offset at the nuisance settings, the placed ones
            "note": SHIFTS_NOTE, "offset": study.offset,
            "profile": {k: getattr(p, k) for k in SHIFT_NAMES.values()},
            # `write_only` places no shifts of a setting whose data it has not loaded
            "placed": {k.key: {"shifts": r["shifts"], "f": r["f"]} for k in knobs
                       if k.nuisance and (k in study.knob_data or not study.write_only)
                       for r in [study.placement(k)]}},
        "training": training_facts(study),
        "backbone": {"name": p.backbone, "weights_identity": profile_weights_identity(p),
                     "saw": backbone_saw(p)},
        "command": study.command,
        "machine": machine_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "seconds_stored_runs": round(sum(r.get("seconds", 0) for r in study.store.rows)),
    }


def paired_pairs(study, ref: str, rows: dict):
    """(a, b, metric) for every paired difference the results report."""
    for arm in study.arms:
        partner = ablation.stego_partner(arm)
        if arm != partner and partner in rows:
            yield from ((arm, partner, m) for m in ("unsup", "linear"))
    if {"depthg-corrected", "depthg-released"} <= set(study.arms):
        yield from (("depthg-corrected", "depthg-released", m) for m in ("unsup", "linear"))
    for arm in dict.fromkeys([ref, f"stego-{study.profile.fidelity}"]):
        if rows.get(arm):
            yield from ((arm, name, "linear" if name == "linear_raw" else "unsup")
                        for name in RAW_BASELINES)


def paired_intervals(study, ref: str, rows: dict, base_rows: dict) -> dict:
    """"a vs b" → metric → paired bootstrap interval, over the seeds both sides have."""
    out, both = {}, {**rows, **base_rows}
    for a, b, metric in paired_pairs(study, ref, rows):
        ra, rb = ({r["seed"]: r for r in both[name]} for name in (a, b))
        seeds = [s for s in study.seeds if s in ra and s in rb]
        if not seeds:
            continue
        ha, hb = (np.stack([study.store.hists(r[s])[metric] for s in seeds]) for r in (ra, rb))
        ci = paired_bootstrap(ha, hb, METRICS[metric], n_boot=study.n_boot, seed=0)
        ci = {k: round(v, 3) if isinstance(v, float) else v for k, v in ci.items()}
        ci["verdict"] = verdict(ci)
        out.setdefault(f"{a} vs {b}", {})[metric] = ci
    return out


def training_facts(study) -> dict:
    """Every arm's training settings (steps, batch, schedules), as its profile holds them."""
    arm = study.variant(study.arms[0], study.knobs[0])
    return {k: getattr(arm, k) for k in (
        "steps", "batch_size", "lr", "val_every", "res", "dim", "samples", "depth_backend",
        "depth_decay_every", "depth_decay_factor", "fps_sample_decay_every",
        "fps_sample_decay_factor")}


def backbone_saw(profile: Profile) -> str:
    """What the frozen backbone was trained on, in words (from the weights manifest)."""
    if not profile.backbone.startswith("embedded"):
        return f"{profile.backbone}: its own pretraining data (not SynthScenes)"
    training = load_json(manifest_path())["vit"]["training"]  # names a missing file
    data = training["data"]
    return (f"{data['n_train']} SynthScenes images of seed {data['seed']} at {data['size']} px, "
            f"{training['steps']} self-supervised steps, labels never used; all without "
            "camouflage (the knob is newer than the weights) and no new pretraining for this "
            "study, so camouflaged things are new to the backbone")


def write_results(study, results_path: Path, publish: Path | None) -> dict:
    """The results and figures; with `publish` copies there and in figures/, and the README."""
    results = summarize(study)
    save_json(results_path, results)
    figures = []
    for name, draw in (("validation", viz.validation_curves), ("knob", viz.knob_effect),
                       ("arms", viz.arm_table_figure)):
        if (fig := draw(results)) is not None:
            figures.append(results_path.parent / f"study_{name}.png")
            fig.savefig(figures[-1], dpi=110, bbox_inches="tight")
            plt.close(fig)
    if publish is None:
        return results
    save_json(publish / "results.json", results)
    with atomic_path(publish / "README.md") as tmp:
        tmp.write_text(study_markdown(results) + "\n")
    for fig in figures:
        for target in (publish / fig.name, REPO_ROOT / "figures" / fig.name):
            if fig.resolve() != target.resolve():
                shutil.copyfile(fig, target)
    return results
