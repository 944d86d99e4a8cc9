"""docs/study/README.md and the tables and sentences the chapters print, from a results file
alone, so that a chapter and the README show the same numbers."""

from __future__ import annotations

import numpy as np

from .. import ablation
from ..config import REPO_ROOT
from .claims import ci_at, claims, fmt_ci, prediction_checks, setting_label
from .scoring import last_quarter

BASELINES = {
    "kmeans_raw_train_fit": "k-means on raw backbone features, fitted on the training crops",
    "kmeans_raw_transductive": "k-means on raw backbone features, fitted on the report images",
    "linear_raw": "linear probe on raw backbone features (trained on the training crops)",
}


def results_table(results: dict, knob: str | None = None) -> str:
    """Markdown: per arm and baseline, mean ± std over seeds of report mIoU."""
    knob = knob or results["knob"]["settings"][0]
    lines = [f"| {setting_label(results, knob)} | seeds | unsup. mIoU | linear mIoU | "
             "k-means on codes |", "|---|---:|---:|---:|---:|"]

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
    for name in (n for n in BASELINES if n in results["baselines"]):
        vals = results.get("baselines_per_seed", {}).get(name, {}).get(knob, [])
        unsup, linear = (cell(vals), "—") if "kmeans" in name else ("—", cell(vals))
        lines.append(f"| {BASELINES[name]} | {len(vals)} | {unsup} | {linear} | — |")
    return "\n".join(lines)


def ci_lines(results: dict, knob: str | None = None) -> list[str]:
    """One sentence per paired difference at a knob setting."""
    knob = knob or results["knob"]["settings"][0]
    return [f"{name} ({metric} mIoU): {ci['diff']:+.1f} points, 95 % CI [{ci['lo']:+.1f}, "
            f"{ci['hi']:+.1f}] over {ci['seeds']} seeds × {ci['images']} images — {ci['verdict']}"
            for name, by_knob in results["ci95"].items()
            for metric, ci in by_knob.get(knob, {}).items()]


def head_margin(results: dict, knob: str | None = None) -> dict | None:
    """The head (reference arm, unsupervised) minus k-means on raw features fitted on train."""
    return ci_at(results, f"{results.get('reference_arm')} vs kmeans_raw_train_fit",
                 knob or results["knob"]["settings"][0])


def readme_summary(results: dict) -> str:
    """The README's paragraph: head − k-means and DepthG − STEGO per setting, and the run."""
    ref = results.get("reference_arm", "depthg-corrected")
    parts = []
    for knob in results["knob"]["settings"]:
        bits = [f"{what} {fmt_ci(ci)}" for what, ci in (
            ("head − k-means on raw features (fitted on train)", head_margin(results, knob)),
            ("DepthG − STEGO", ci_at(results, f"{ref} vs {ablation.stego_partner(ref)}", knob)))
            if ci is not None]
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
    """How much the tune-split cluster probe still moved over the last quarter of training
    (near 0 for every arm: the arms were compared at a plateau)."""
    val = results.get("validation") or {}
    curves = val.get("curves") or {}
    gains = {a: c["gain_last_quarter"] for a, c in curves.items()
             if c.get("gain_last_quarter") is not None}
    if not gains:
        return None
    steps = curves[next(iter(gains))]["step"]
    quarter = last_quarter(len(steps))
    lo, hi = min(gains, key=gains.get), max(gains, key=gains.get)
    return (f"Plateau: over the last validations (step {steps[-1 - quarter]} → {steps[-1]}) "
            f"the {val['split']}-split cluster-probe mIoU (camouflage {val['knob']}, mean over "
            f"seeds) moved between {gains[lo]:+.2f} ({lo}) and {gains[hi]:+.2f} ({hi}) points.")


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


def study_markdown(results: dict) -> str:
    """docs/study/README.md: run, claims, predictions, diagnosis, tables, intervals, figures."""
    bullets, table = claims_markdown(results).split("\n\n")
    pred, diag = (REPO_ROOT / "docs" / "study" / n for n in ("PREDICTIONS.md", "diagnosis.md"))
    lines = [*run_lines(results), "## Claims (read from the results)", "", bullets, "",
             *([pred.read_text().strip(), ""] if pred.exists() else []),
             "## Results: which predictions held", "", table,
             *(["", diag.read_text().strip()] if diag.exists() else [])]
    if reg := regime_table(results):
        lines += ["", "## The regime check (one seed, camouflage 0)", "", reg]
    for knob in results["knob"]["settings"]:
        lines += setting_lines(results, knob)
    plateau = plateau_line(results)
    lines += ["", "## Figures", "", *([plateau, ""] if plateau else []),
              "![the knobs: head − k-means and DepthG − STEGO with 95 % intervals]"
              "(study_knob.png)", "",
              "![validation curves](study_validation.png)", "",
              "![unsupervised mIoU per arm](study_arms.png)", ""]
    return "\n".join(lines)


def run_lines(results: dict) -> list[str]:
    """The README's head: what ran where, on which splits and seeds; the summary."""
    s = results["splits"]
    nz = results.get("nuisance", {})
    return [
        "# The study of chapter 06 (generated — do not edit)", "",
        "Written by `python -m depthg_lib.study --publish` from `results.json` beside this "
        "file; every number below is read from it. The predictions section is "
        "`PREDICTIONS.md`, copied as it was written before the runs.", "",
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
        f"- objective: version {results.get('objective_version')} of `losses.OBJECTIVE_VERSION`",
        "", "## Summary", "", readme_summary(results), "",
    ]


def claims_markdown(results: dict) -> str:
    """The two claims as bullets, then the table of which predictions held (chapter 06)."""
    said = claims(results)
    return "\n".join([*(f"- {said[k][0].upper()}{said[k][1:]}." for k in ("head", "depth")), "",
                      "| prediction | outcome | numbers |", "|---|---|---|",
                      *(f"| {p} | {v} | {n} |" for p, v, n in prediction_checks(results))])


def setting_lines(results: dict, knob: str) -> list[str]:
    """One knob setting: its table, the premise, its intervals."""
    lines = ["", f"## {setting_label(results, knob)}", "", results_table(results, knob), ""]
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
    return lines + [f"- {line}" for line in ci_lines(results, knob)]
