"""The ablation of chapter 06: what does each ingredient of DepthG buy, on the same budget?

Four methods, each over several seeds, all trained for the profile's steps on the same crops,
kNN table and backbone, and scored by the same evaluation (SPEC §9):

- `kmeans` — k-means on the raw backbone patch features: no training at all;
- `stego` — the STEGO objective: no depth term, random sampling points;
- `depthg-released` — DepthG exactly as the released code computes it (SPEC §13: the depth
  correlation is constant, FPS points transposed);
- `depthg-corrected` — DepthG as the paper means it (depth similarity at the sampled points,
  FPS points where they were chosen).

Each (method, seed) result is stored as soon as it exists, so an interrupted ablation resumes.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from .config import Profile, load_profile
from .errors import DepthGError
from .evaluate import evaluate, kmeans_baseline
from .io import load_json, recorded_settings_differ, save_json
from .models import profile_weights_identity
from .train import stage_settings as train_settings
from .train import train

METHODS = {
    "kmeans": "k-means on raw backbone features",
    "stego": "STEGO (no depth term, random points)",
    "depthg-released": "DepthG, released code",
    "depthg-corrected": "DepthG, corrected",
}


def method_profile(profile: Profile, method: str) -> Profile:
    """The profile a method trains with: only the settings that define the method change,
    and the budget (`ablation_steps`, validated once at the end) that every method shares."""
    steps = profile.ablation_steps or profile.steps
    profile = profile.replace(steps=steps, val_every=steps)
    if method == "stego":
        return profile.replace(use_depth=False, sampling="random", fps_sample_decay=False)
    if method == "depthg-released":
        return profile.replace(fidelity="released", use_depth=True, sampling="fps")
    if method == "depthg-corrected":
        return profile.replace(fidelity="corrected", use_depth=True, sampling="fps")
    if method == "kmeans":
        return profile
    raise DepthGError(f"unknown ablation method {method!r}; choose from {', '.join(METHODS)}")


def _settings(profile: Profile, method: str, seed: int) -> dict:
    """What a stored result depends on: re-run it when any of these change."""
    values = dataclasses.asdict(method_profile(profile, method))
    values.pop("source", None)
    return {"method": method, "seed": seed, "profile": values,
            "backbone_weights": profile_weights_identity(profile)}


def _stale(run_dir: Path, variant: Profile, seed: int) -> bool:
    """True when `run_dir` holds a training run made with other settings (e.g. weights)."""
    return recorded_settings_differ(run_dir, "train", train_settings(variant, seed))


def run_ablation(profile: Profile | str, seeds: int | None = None,
                 methods: tuple[str, ...] = tuple(METHODS), device: str = "auto",
                 out_dir: str | Path | None = None, progress: bool = True,
                 force: bool = False) -> list[dict]:
    """Train and evaluate every (method, seed); returns one row per run with its scores.

    `seeds` defaults to the profile's `ablation_seeds` (3 in `demo`, 1 in `test`).
    Results are kept in `<out_dir>/results.json` (default `runs/<profile>/ablation`); a run
    whose settings (profile, method, seed, backbone weights) are stored there is not repeated,
    unless `force`, which starts every run over.
    """
    profile = load_profile(profile)
    seeds = profile.ablation_seeds if seeds is None else int(seeds)
    out = Path(out_dir) if out_dir is not None else profile.paths.run_dir / "ablation"
    store = out / "results.json"
    rows = load_json(store) if store.exists() and not force else []
    for method in methods:
        variant = method_profile(profile, method)
        for seed in range(seeds):
            settings = _settings(profile, method, seed)
            if any(r["settings"] == settings for r in rows):
                continue
            if method == "kmeans":
                result = kmeans_baseline(variant, seed=seed, device=device, progress=progress)
                unsup, linear = result, {"miou": None, "acc": None}
            else:
                # the frozen-feature cache (one per fidelity) is shared by all runs
                # a stale run folder (other settings or weights) is replaced: its result is
                # not in the store, so nothing recorded is lost; an interrupted one resumes
                run_dir = out / method / f"seed{seed}"
                stale = force or _stale(run_dir, variant, seed)
                ckpts = run_dir / "checkpoints"
                unfinished = (ckpts / "last.pt").exists() and not (ckpts / "final.pt").exists()
                checkpoint = train(variant, out_dir=run_dir, seed=seed, device=device,
                                   progress=progress, force=stale,
                                   resume=unfinished and not stale)
                metrics = evaluate(variant, checkpoint, device=device, progress=progress,
                                   out_dir=run_dir / "eval")
                unsup, linear = metrics["unsupervised"], metrics["linear"]
            rows = [r for r in rows if not (r["method"] == method and r["seed"] == seed)]
            rows.append({"method": method, "seed": seed, "miou": unsup["miou"],
                         "acc": unsup["acc"], "linear_miou": linear["miou"],
                         "linear_acc": linear["acc"], "settings": settings})
            save_json(store, rows)  # after every run: an interrupted ablation resumes here
    return [r for r in rows if r["method"] in methods and r["seed"] < seeds]


def summarize(rows: list[dict]) -> list[dict]:
    """Mean ± sample standard deviation per method (std is 0 for one seed)."""
    table = []
    for method in METHODS:
        runs = [r for r in rows if r["method"] == method]
        if not runs:
            continue
        entry = {"method": method, "label": METHODS[method], "seeds": len(runs)}
        for key in ("miou", "acc", "linear_miou", "linear_acc"):
            values = np.array([r[key] for r in runs if r[key] is not None], dtype=float)
            if len(values) == 0:
                entry[key], entry[f"{key}_std"] = None, None
                continue
            entry[key] = float(values.mean())
            entry[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table.append(entry)
    return table


def format_table(table: list[dict]) -> str:
    """A Markdown table of `summarize`'s rows (unsupervised and linear mIoU / Acc, %)."""
    def cell(entry, key):
        value = entry[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:.1f} ± {entry[key + '_std']:.1f}"

    lines = ["| method | seeds | unsup. mIoU | unsup. Acc | linear mIoU | linear Acc |",
             "|---|---:|---:|---:|---:|---:|"]
    for e in table:
        lines.append(f"| {e['label']} | {e['seeds']} | {cell(e, 'miou')} | {cell(e, 'acc')} | "
                     f"{cell(e, 'linear_miou')} | {cell(e, 'linear_acc')} |")
    return "\n".join(lines)


def compare(table: list[dict], a: str, b: str, key: str = "miou") -> str:
    """One honest sentence: method `a` minus method `b`, judged against the seed spread."""
    by = {e["method"]: e for e in table}
    if a not in by or b not in by:
        return f"{a} vs {b}: not both in the table"
    diff = by[a][key] - by[b][key]
    spread = max(by[a][f"{key}_std"], by[b][f"{key}_std"])
    if min(by[a]["seeds"], by[b]["seeds"]) < 2:
        verdict = "one seed: no spread to judge by"
    elif abs(diff) <= spread:
        verdict = "within the spread over seeds"
    else:
        verdict = "larger than the spread over seeds"
    name = {"miou": "mIoU", "acc": "Acc"}.get(key, key)
    return f"{METHODS[a]} vs {METHODS[b]}: {diff:+.1f} {name} points ({verdict})"
