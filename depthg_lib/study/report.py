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
from ..losses import OBJECTIVE_VERSION
from ..models import profile_weights_identity
from ..viz import ablation as viz
from .splits import KNOB, KNOB_MEANING, knob_key, split_size
from .stats import METRICS, paired_bootstrap, verdict


def nuisance_spec(strength: float) -> dict:
    from .runner import nuisance_spec as spec

    return spec(strength)

NUISANCE_MEANING = (
    "structured, class-free signal added to the frozen features after the backbone "
    "(depthg_lib.nuisance; an experimental device of the course, not part of DepthG): a "
    "per-source-image offset, a position-dependent pattern over the patch grid and a few "
    "high-norm outlier tokens, each of size strength × the clean features' mean norm "
    "(outliers 4×), in low-rank subspaces; the same for every arm and baseline")
BASELINES = {
    "kmeans_raw_train_fit": "k-means on raw backbone features, fitted on the training crops",
    "kmeans_raw_transductive": "k-means on raw backbone features, fitted on the report images",
    "linear_raw": "linear probe on raw backbone features (trained on the training crops)",
    "head_cluster_probe": "the trained head's cluster probe (reference arm)",
    "head_kmeans_codes": "k-means on the trained head's codes, fitted on the training crops",
    "head_linear_probe": "the trained head's linear probe (reference arm)",
}
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


def last_quarter(n_points: int) -> int:
    """How many validations back "the last quarter" of a curve of n_points starts."""
    return max(1, n_points // 4)


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
        # paired differences over the seeds both sides have
        pairs = []
        for arm in study.arms:
            partner = ablation.stego_partner(arm)
            if arm != partner and partner in rows:
                pairs += [(arm, partner, "arm", m) for m in ("unsup", "linear")]
        if {"depthg-corrected", "depthg-released"} <= set(study.arms):
            pairs += [("depthg-corrected", "depthg-released", "arm", m)
                      for m in ("unsup", "linear")]
        for arm in dict.fromkeys([ref, f"stego-{p.fidelity}"]):
            if arm in rows and rows[arm]:
                pairs += [(arm, "kmeans_raw_train_fit", "baseline", "unsup"),
                          (arm, "kmeans_raw_transductive", "baseline", "unsup"),
                          (arm, "linear_raw", "baseline", "linear")]
        for a, b, kind_b, metric in pairs:
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
            ci95.setdefault(f"{a} vs {b}", {}).setdefault(key, {})[metric] = ci
    premise = {knob_key(k): study.premise(k) for k in study.knobs
               if study.store.find(study.premise_identity(k)) is not None}
    done = sum(len(v2["unsup"]) for v in arms.values() for v2 in v.values())
    return {
        "schema": 1,
        "profile": p.name,
        "objective_version": study.objective_version,
        "complete": bool(complete),
        "runs_done": done,
        "runs_total": len(study.seeds) * len(study.knobs) * len(study.arms),
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
        "arms": arms,
        "arm_labels": {a: ablation.ARMS[a] for a in study.arms},
        "reference_arm": ref,
        "baselines": baselines,
        "baselines_per_seed": per_seed,
        "baseline_labels": BASELINES,
        "ci95": ci95,
        "ci_method": (f"paired bootstrap over training seeds and report images "
                      f"({study.n_boot} draws, percentile interval); unsupervised mIoU is "
                      "re-matched (Hungarian) in every draw"),
        "premise": premise,
        "validation": {"split": "tune", "knob": knob_key(study.knobs[0]),
                       "curves": validation_curves(study, study.knobs[0])},
        "shifts": {**study.tuning,
                   "profile": {"shift_intra": p.shift_intra, "shift_inter": p.shift_inter,
                               "shift_neg": p.shift_neg},
                   "offsets": {knob_key(k): {a: study.offsets.get((k.key, a), 0.0)
                                             for a in study.arms} for k in study.knobs},
                   "placed": {knob_key(k): {"shifts": r["shifts"], "f": r["f"]}
                              for k in study.knobs if k.nuisance
                              for r in [_placement(study, k)] if r}},
        "training": {"steps": study.steps, "batch_size": p.batch_size, "lr": p.lr,
                     "val_every": study.val_every, "res": p.res, "dim": p.dim,
                     "samples": p.samples, "depth_backend": p.depth_backend,
                     "depth_decay_every": ablation.schedule_every(
                         p.depth_decay_share, study.steps, p.depth_decay_every),
                     "depth_decay_factor": p.depth_decay_factor,
                     "fps_sample_decay_every": ablation.schedule_every(
                         p.fps_sample_decay_share, study.steps, p.fps_sample_decay_every),
                     "fps_sample_decay_factor": p.fps_sample_decay_factor},
        "backbone": {"name": p.backbone, "weights_identity": profile_weights_identity(p),
                     "saw": backbone_saw(p)},
        "command": study.command,
        "machine": machine_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "seconds_this_process": round(time.time() - study.started),
        "seconds_stored_runs": round(sum(r.get("seconds", 0) for r in study.store.rows)),
    }


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


def results_table(results: dict, knob: str | None = None) -> str:
    """Markdown: per arm, mean ± std over seeds of report mIoU (unsup., linear, k-means on
    codes), then the baselines."""
    knob = knob or results["knob"]["settings"][0]
    lines = [f"| {setting_label(results, knob)} | seeds | unsup. mIoU | linear mIoU | "
             "k-means on codes |",
             "|---|---:|---:|---:|---:|"]

    def cell(values):
        if not values:
            return "—"
        if len(values) == 1:  # one seed: no spread to show
            return f"{values[0]:.1f}"
        return f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}"

    for arm, by_knob in results["arms"].items():
        v = by_knob.get(knob, {})
        label = results.get("arm_labels", {}).get(arm, arm)
        lines.append(f"| {label} | {len(v.get('unsup', []))} | {cell(v.get('unsup'))} | "
                     f"{cell(v.get('linear'))} | {cell(v.get('kmeans_codes'))} |")
    for name in results["baselines"]:
        if name.startswith("head_"):
            continue
        vals = results.get("baselines_per_seed", {}).get(name, {}).get(knob, [])
        unsup = cell(vals) if "kmeans" in name else "—"
        linear = cell(vals) if name == "linear_raw" else "—"
        lines.append(f"| {BASELINES.get(name, name)} | {len(vals)} | {unsup} | {linear} | — |")
    return "\n".join(lines)


def ci_lines(results: dict, knob: str | None = None) -> list[str]:
    """One sentence per paired difference at a knob setting, read from the results."""
    knob = knob or results["knob"]["settings"][0]
    out = []
    for name, by_knob in results["ci95"].items():
        for metric, ci in by_knob.get(knob, {}).items():
            out.append(f"{name} ({metric} mIoU): {ci['diff']:+.1f} points, 95 % CI "
                       f"[{ci['lo']:+.1f}, {ci['hi']:+.1f}] over {ci['seeds']} seeds × "
                       f"{ci['images']} images — {ci['verdict']}")
    return out


def head_margin(results: dict, knob: str | None = None) -> dict | None:
    """The head (reference arm, unsupervised) minus k-means on raw features fitted on train."""
    knob = knob or results["knob"]["settings"][0]
    ref = results.get("reference_arm")
    return results["ci95"].get(f"{ref} vs kmeans_raw_train_fit", {}).get(knob, {}).get("unsup")


def readme_summary(results: dict) -> str:
    """A short paragraph for the README: the head − k-means margin and DepthG − STEGO at each
    knob setting, with their intervals, the run's state, machine, date and command."""
    ref = results.get("reference_arm", "depthg-corrected")
    partner = ablation.stego_partner(ref)
    parts = []
    for knob in results["knob"]["settings"]:
        bits = []
        m = head_margin(results, knob)
        if m is not None:
            bits.append(f"head − k-means on raw features (fitted on train) {m['diff']:+.1f} "
                        f"[{m['lo']:+.1f}, {m['hi']:+.1f}]")
        d = results["ci95"].get(f"{ref} vs {partner}", {}).get(knob, {}).get("unsup")
        if d is not None:
            bits.append(f"DepthG − STEGO {d['diff']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]")
        if bits:
            parts.append(f"{setting_label(results, knob)}: " + "; ".join(bits))
    state = ("complete" if results.get("complete") else
             f"{results['runs_done']} of {results['runs_total']} runs so far")
    return (f"Study ({state}; objective version {results.get('objective_version')}; report "
            f"split seed {results['splits']['report']}, "
            f"{results['splits']['n_report_images']} images, seeds {results['seeds']}; "
            f"unsupervised mIoU points, 95 % CI): " + ". ".join(parts) +
            f". {results['machine']}, {results['date']}, `{results['command']}`.")


def plateau_line(results: dict) -> str | None:
    """How much the tune-split cluster probe still moved over the last quarter of training:
    near 0 for every arm means the arms were compared at a plateau."""
    val = results.get("validation") or {}
    curves = {a: c for a, c in (val.get("curves") or {}).items()
              if c.get("gain_last_quarter") is not None}
    if not curves:
        return None
    gains = {a: c["gain_last_quarter"] for a, c in curves.items()}
    steps = next(iter(curves.values()))["step"]
    quarter = last_quarter(len(steps))
    lo, hi = min(gains, key=gains.get), max(gains, key=gains.get)
    return (f"Plateau: over the last validations (step {steps[-1 - quarter]} → {steps[-1]}) "
            f"the {val['split']}-split cluster-probe mIoU (camouflage {val['knob']}, mean over "
            f"seeds) moved between {gains[lo]:+.2f} ({lo}) and {gains[hi]:+.2f} ({hi}) points.")


def setting_label(results: dict, knob: str) -> str:
    return results.get("knob", {}).get("labels", {}).get(knob, f"{KNOB} {knob}")


def _ci(results: dict, name: str, knob: str, metric: str = "unsup") -> dict | None:
    return results.get("ci95", {}).get(name, {}).get(knob, {}).get(metric)


def _fmt(ci: dict) -> str:
    return f"{ci['diff']:+.1f} [{ci['lo']:+.1f}, {ci['hi']:+.1f}]"


HEAD_ARMS = ("stego-corrected", "depthg-corrected")


def claims(results: dict) -> dict:
    """The study's closing claims, each a sentence with its intervals, read from the results:
    `head` (when does a head beat k-means on the raw features by ≥ 3 unsupervised mIoU points
    with an interval above 0?) and `depth` (when does DepthG beat STEGO with an interval above
    0?). Also the settings behind each, so that a chapter can show them."""
    keys = results["knob"]["settings"]
    head_rows, depth_rows = [], []
    for knob in keys:
        for arm in HEAD_ARMS:
            ci = _ci(results, f"{arm} vs kmeans_raw_train_fit", knob)
            if ci:
                head_rows.append((knob, arm, ci))
        ci = _ci(results, "depthg-corrected vs stego-corrected", knob)
        if ci:
            depth_rows.append((knob, ci))
    label = {"stego-corrected": "STEGO", "depthg-corrected": "DepthG"}
    wins = [(k, a, c) for k, a, c in head_rows if c["lo"] > 0 and c["diff"] >= 3]
    if wins:
        head = ("the head helps when the features carry class-free structure: it beats "
                "k-means on the raw features (fitted on train) by ≥ 3 unsupervised mIoU points "
                "with the interval above 0 at " + "; ".join(
                    f"{setting_label(results, k)} ({label[a]} {_fmt(c)})" for k, a, c in wins))
        others = [(k, a, c) for k, a, c in head_rows if (k, a, c) not in wins]
        if others:
            best = max(others, key=lambda r: r[2]["diff"])
            head += (f", and not elsewhere (best other: {setting_label(results, best[0])}, "
                     f"{label[best[1]]} {_fmt(best[2])})")
    elif head_rows:
        best = max(head_rows, key=lambda r: r[2]["diff"])
        head = ("the head does not beat k-means on the raw features (fitted on train) by ≥ 3 "
                "unsupervised mIoU points with the interval above 0 at any setting of this "
                f"study: its best is {label[best[1]]} at {setting_label(results, best[0])}, "
                f"{_fmt(best[2])}")
        small = [(k, a, c) for k, a, c in head_rows if c["lo"] > 0]
        if small:
            head += ("; it is above k-means by less than 3 points at " + "; ".join(
                f"{setting_label(results, k)} ({label[a]} {_fmt(c)})" for k, a, c in small))
    else:
        head = "no head has been compared with k-means yet"
    helps = [(k, c) for k, c in depth_rows if c["lo"] > 0]
    hurts = [(k, c) for k, c in depth_rows if c["hi"] < 0]
    if helps:
        depth = ("depth helps when " + "; ".join(
            f"{setting_label(results, k)}: DepthG − STEGO {_fmt(c)}" for k, c in helps))
    elif depth_rows:
        depth = ("depth does not help at any setting of this study (DepthG − STEGO, "
                 "unsupervised mIoU: " + "; ".join(
                     f"{setting_label(results, k)} {_fmt(c)}" for k, c in depth_rows) + ")")
    else:
        depth = "DepthG and STEGO have not been compared yet"
    if hurts and not helps:
        depth += "; it hurts at " + ", ".join(setting_label(results, k) for k, _ in hurts)
    return {"head": head, "depth": depth,
            "head_wins": [{"setting": k, "arm": a, **c} for k, a, c in wins],
            "depth_helps": [{"setting": k, **c} for k, c in helps]}


def _verdict(ok: bool | None) -> str:
    return {True: "held", False: "failed", None: "not tested yet"}[ok]


def prediction_checks(results: dict) -> list[tuple[str, str, str]]:
    """(prediction, held / failed / not tested yet, the numbers) for docs/study/PREDICTIONS.md's
    testable predictions, each decided by a rule fixed with the predictions."""
    out = []
    reg = results.get("regime", {})
    st, dg = reg.get("stego-corrected", {}), reg.get("depthg-corrected", {})
    gains = {n: r.get("tune_gain_last_quarter") for n, r in st.items()}
    ok = all(g is not None and abs(g) <= 1 for g in gains.values()) if gains else None
    out.append(("R1 STEGO flat over the last quarter in every regime", _verdict(ok),
                ", ".join(f"{n} {g:+.2f}" for n, g in gains.items() if g is not None)))
    if {"short-steps", "short-share", "long-share"} <= set(st) & set(dg):
        d = {n: dg[n]["tune_unsup"] - st[n]["tune_unsup"] for n in st if n in dg}
        ok = (d["short-steps"] <= -2 and abs(d["short-share"]) <= 1.5
              and abs(d["long-share"]) <= 1.5)
        out.append(("R2 DepthG − STEGO on tune: several points below with the decay in steps "
                    "over a short run, within ± 1.5 with the schedule as a share",
                    _verdict(ok), ", ".join(f"{n} {v:+.1f}" for n, v in d.items())))
    else:
        out.append(("R2 DepthG − STEGO by regime", _verdict(None), ""))
    cam = [k for k in results["knob"]["settings"]
           if not results["knob"].get("nuisance", {}).get(k)]
    cis = {k: _ci(results, "depthg-corrected vs stego-corrected", k) for k in cam}
    done = [c for c in cis.values() if c]
    ok = all(c["lo"] <= 0 <= c["hi"] for c in done) if len(done) == len(cam) else None
    out.append(("C1 DepthG − STEGO contains 0 at every camouflage setting", _verdict(ok),
                "; ".join(f"{setting_label(results, k)} {_fmt(c)}" for k, c in cis.items()
                          if c)))
    cis = {(k, a): _ci(results, f"{a} vs kmeans_raw_train_fit", k) for k in cam
           for a in HEAD_ARMS}
    done = [c for c in cis.values() if c]
    ok = all(c["lo"] <= 0 for c in done) if len(done) == len(cis) else None
    out.append(("C2 head − k-means below 0 or no detectable difference without nuisance",
                _verdict(ok), "; ".join(f"{setting_label(results, k)} {a.split('-')[0]} "
                                        f"{_fmt(c)}" for (k, a), c in cis.items() if c)))
    nui = sorted([k for k in results["knob"]["settings"]
                  if results["knob"].get("nuisance", {}).get(k)],
                 key=lambda k: results["knob"]["nuisance"][k])
    base = cam[0] if cam else None
    per = results.get("baselines", {})
    km, lin = per.get("kmeans_raw_train_fit", {}), per.get("linear_raw", {})
    if nui and base and all(km.get(k) is not None and lin.get(k) is not None
                            for k in [base] + nui):
        strong = nui[-1]
        ok = km[strong] / lin[strong] <= 0.4 and lin[base] - lin[strong] <= 3
        out.append(("N0 k-means falls to about a third of the linear probe or less, the "
                    "linear probe by ≤ 3 points", _verdict(ok),
                    "; ".join(f"{setting_label(results, k)}: k-means {km[k]:.1f}, linear "
                              f"{lin[k]:.1f}" for k in [base] + nui)))
        heads = results.get("baselines", {})
        arms = results.get("arms", {})
        falls = []
        for k in nui:
            for a in HEAD_ARMS:
                v0, v1 = arms.get(a, {}).get(base, {}).get("unsup"), arms.get(a, {}).get(
                    k, {}).get("unsup")
                if v0 and v1:
                    falls.append((k, a, np.mean(v0) - np.mean(v1), km[base] - km[k]))
        ok = all(f[2] < f[3] for f in falls) if len(falls) == 2 * len(nui) else None
        share = {k: results.get("premise", {}).get(k, {}).get("knn_same_source")
                 for k in [base] + nui}
        out.append(("N1 the heads fall less than k-means under the nuisance (and the kNN "
                    "pairs turn into same-source pairs)", _verdict(ok),
                    "; ".join(f"{setting_label(results, k)} {a.split('-')[0]} falls "
                              f"{h:.1f}, k-means {m:.1f}" for k, a, h, m in falls)
                    + ("; kNN same-source share " + ", ".join(
                        f"{setting_label(results, k)} {v:.2f}" for k, v in share.items()
                        if v is not None) if any(v is not None for v in share.values())
                       else "")))
        del heads
    else:
        out.append(("N0/N1 the nuisance settings", _verdict(None), ""))
    out.append(("N2 the position pattern hurts head and k-means alike; N3 the outliers cost "
                "little", "not tested by these runs",
                "the three kinds ran together; their separate effect on the raw baselines is in "
                "nuisance_levels.json"))
    cis = {(k, a): _ci(results, f"{a} vs kmeans_raw_train_fit", k) for k in nui
           for a in HEAD_ARMS}
    if nui and all(cis.get((nui[-1], a)) for a in HEAD_ARMS):
        strong = [cis[(nui[-1], a)] for a in HEAD_ARMS]
        ok = all(c["diff"] >= 3 and c["lo"] > 0 for c in strong)
        out.append(("N4 at the strongest nuisance both heads beat k-means by ≥ 3 with the "
                    "interval above 0", _verdict(ok), "; ".join(
                        f"{setting_label(results, k)} {a.split('-')[0]} {_fmt(c)}"
                        for (k, a), c in cis.items() if c)))
    else:
        out.append(("N4 the head against k-means under nuisance", _verdict(None), ""))
    d0 = _ci(results, "depthg-corrected vs stego-corrected", base) if base else None
    dn = {k: _ci(results, "depthg-corrected vs stego-corrected", k) for k in nui}
    if d0 and nui and all(dn.values()):
        ok = all(c["diff"] >= 0 and c["diff"] > d0["diff"] for c in dn.values())
        out.append(("N5 DepthG − STEGO ≥ 0 under nuisance and larger than without",
                    _verdict(ok), "; ".join(f"{setting_label(results, k)} {_fmt(c)}"
                                            for k, c in {base: d0, **dn}.items())))
    else:
        out.append(("N5 depth under nuisance", _verdict(None), ""))
    return out


def regime_table(results: dict) -> str | None:
    reg = results.get("regime") or {}
    if not reg:
        return None
    lines = ["| arm | regime | steps | depth decay every | S decay every | tune unsup. | "
             "tune linear | tune gain, last quarter | report unsup. |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, by in reg.items():
        for name, r in by.items():
            g = r.get("tune_gain_last_quarter")
            lines.append(f"| {arm} | {name} | {r['steps']} | {r['depth_decay_every']} | "
                         f"{r['fps_sample_decay_every']} | {r['tune_unsup']:.1f} | "
                         f"{r['tune_linear']:.1f} | {'—' if g is None else f'{g:+.2f}'} | "
                         f"{r['report_unsup']:.1f} |")
    return "\n".join(lines)


def predictions_text() -> str | None:
    path = REPO_ROOT / "docs" / "study" / "PREDICTIONS.md"
    return path.read_text().strip() if path.exists() else None


def study_markdown(results: dict) -> str:
    """docs/study/README.md: what was run, the predictions (as written before the runs),
    which held, the claims, every table and interval, the premise, figures."""
    s = results["splits"]
    nz = results.get("nuisance", {})
    lines = [
        "# The study of chapter 06 (generated — do not edit)",
        "",
        "Written by `python -m depthg_lib.study --publish` from `results.json` beside this "
        "file; every number below is read from it. The predictions section is "
        "`PREDICTIONS.md`, copied as it was written before the runs.",
        "",
        f"- command: `{results['command']}`",
        f"- machine: {results['machine']}, date: {results['date']}, load average at the last "
        f"write: {results.get('load_average')}",
        f"- state: {'complete' if results['complete'] else 'incomplete'} — "
        f"{results['runs_done']} of {results['runs_total']} training runs stored; resume with "
        "the same command and `--resume`",
        f"- splits (SynthScenes seeds): train {s['train']} ({s['n_train_images']} images), "
        f"tune {s['tune']} ({s['n_tune_images']}), report {s['report']} "
        f"({s['n_report_images']}), {s['image_size']} px",
        f"- training seeds: {results['seeds']}; per run: " + ", ".join(
            f"{k} {v}" for k, v in results["training"].items()),
        f"- knobs: {results['knob']['meaning']}; settings: " + ", ".join(
            setting_label(results, k) for k in results["knob"]["settings"]),
        *([f"- nuisance: {nz['meaning']}; strengths chosen on tune from the raw features "
           "alone (`nuisance_levels.json`)"] if nz else []),
        f"- shifts: {results['shifts'].get('note', 'the profile’s')}",
        f"- backbone: {results['backbone']['name']} — {results['backbone']['saw']}",
        f"- intervals: {results['ci_method']}",
        f"- objective: version {results.get('objective_version')} of `losses.OBJECTIVE_VERSION`"
        + ("" if results.get("objective_version") == OBJECTIVE_VERSION else
           f" — **older than this library's version {OBJECTIVE_VERSION}**: these runs predate "
           "the fidelity fixes; `--resume` redoes every arm with the current objective"),
        "",
        "## Summary",
        "",
        readme_summary(results),
        "",
    ]
    c = claims(results)
    lines += ["## Claims (read from the results)", "", f"- {c['head'][0].upper()}{c['head'][1:]}.",
              f"- {c['depth'][0].upper()}{c['depth'][1:]}.", ""]
    pred = predictions_text()
    if pred:
        lines += [pred, ""]
    lines += ["## Results: which predictions held", "",
              "| prediction | outcome | numbers |", "|---|---|---|"]
    lines += [f"| {p} | {v} | {n} |" for p, v, n in prediction_checks(results)]
    diag_path = REPO_ROOT / "docs" / "study" / "diagnosis.json"
    if diag_path.exists():
        from .diagnose import diagnosis_table

        lines += ["", "## What F looks like and what the codes learn (tune split, seed 0)", "",
                  "Mean cosine similarity of patch pairs (`python -m depthg_lib.study.diagnose`, "
                  "`diagnosis.json`): *by image* = within-image minus across-image similarity "
                  "of different-class pairs (what a per-image offset adds), *by position* = "
                  "same grid position minus other positions across images (what a position "
                  "pattern adds), *class gap* = same minus different class across images.", "",
                  diagnosis_table(load_json(diag_path))]
    reg = regime_table(results)
    if reg:
        lines += ["", "## The regime check (one seed, camouflage 0)", "", reg]
    for knob in results["knob"]["settings"]:
        lines += ["", f"## {setting_label(results, knob)}", "", results_table(results, knob),
                  ""]
        pr = results.get("premise", {}).get(knob)
        if pr:
            a, f = pr["auroc"], pr["fps_thing_share"]
            lines += [f"Premise on tune: same-class AUROC feature {a['feature']:.3f}, depth "
                      f"{a['depth']:.3f}, both {a['both']:.3f} (depth adds "
                      f"{a['depth_gain']:+.3f}); FPS puts {100 * f['fps']:.0f} % of points on "
                      f"things, random points {100 * f['random']:.0f} %."]
            sim = pr.get("similarity")
            if sim:
                lines += [f"F on tune (mean cosine similarity, same / different class): within "
                          f"an image {sim['intra']['same_class']:.3f} / "
                          f"{sim['intra']['different_class']:.3f}, across images "
                          f"{sim['cross']['same_class']:.3f} / "
                          f"{sim['cross']['different_class']:.3f}; kNN positives from the same "
                          f"source image: {100 * pr.get('knn_same_source', 0):.0f} %."]
            lines += [""]
        placed = results.get("shifts", {}).get("placed", {}).get(knob)
        if placed:
            f = placed["f"]
            lines += ["Shifts placed by F (mean ± std of centred F per term, clean → now): " +
                      "; ".join(f"{g} {f['clean'][g]['mean']:.3f} ± {f['clean'][g]['std']:.3f}"
                                f" → {f['now'][g]['mean']:.3f} ± {f['now'][g]['std']:.3f}"
                                for g in ("intra", "inter", "neg")) +
                      f"; placed {placed['shifts']}; tuned offsets "
                      f"{results['shifts'].get('offsets', {}).get(knob)}.", ""]
        lines += [f"- {line}" for line in ci_lines(results, knob)]
    plateau = plateau_line(results)
    lines += ["", "## Figures", "", *([plateau, ""] if plateau else []),
              "![the knobs: head − k-means and DepthG − STEGO with 95 % intervals]"
              "(study_knob.png)", "",
              "![validation curves](study_validation.png)", "",
              "![unsupervised mIoU per arm](study_arms.png)", ""]
    return "\n".join(lines)
