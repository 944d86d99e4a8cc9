"""What F looks like and what the codes learn, at each setting of a finished study.

    python tools/study_diagnose.py --profile study --out DIR [--publish]

On the tune images as the arms saw them, for the raw features and each arm's seed-0 codes:
the mean cosine similarity of patch pairs within one image and across two, of the same class
and of different classes, and across two images at the same grid position. `by_image`
(within- minus across-image, different classes) is what a per-image offset adds,
`by_position` (same minus other positions) what a position pattern adds, `class_gap` (same
minus different class across images) what the class says. Written to `<out>/diagnosis.json`
(with --publish also `docs/study/diagnosis.json` and its README section, `diagnosis.md`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from depthg_lib.checkpoint import load_checkpoint
from depthg_lib.config import REPO_ROOT, load_profile
from depthg_lib.errors import run_cli
from depthg_lib.io import save_json
from depthg_lib.study.runner import Study
from depthg_lib.study.scoring import head_codes


@torch.no_grad()
def patch_vectors(maps: torch.Tensor, labels: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Unit-norm patch vectors (N, h·w, C) of (N, C, h, w) maps, and each patch's label (the
    label at its centre) for (N, H, W) labels."""
    x = F.normalize(maps.float(), dim=1)
    n, c, h, w = x.shape
    lab = F.interpolate(torch.from_numpy(labels).float()[:, None], size=(h, w),
                        mode="nearest")[:, 0].long().reshape(n, -1).numpy()
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c), lab


def class_means(sim: np.ndarray, la: np.ndarray, lb: np.ndarray, n_classes: int
                ) -> tuple[np.floating, np.floating]:
    """Mean similarity of the labelled pairs of the same class and of different classes."""
    valid = (la >= 0) & (lb >= 0) & (la < n_classes) & (lb < n_classes)
    return sim[valid & (la == lb)].mean(), sim[valid & (la != lb)].mean()


@torch.no_grad()
def similarity_profile(maps: torch.Tensor, labels: np.ndarray, n_classes: int,
                       pairs: int = 40000, seed: int = 0) -> dict:
    """The pair similarities above for (N, C, h, w) maps and (N, H, W) labels (−1 ignored)."""
    flat, lab = patch_vectors(maps, labels)
    n, hw = lab.shape
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    i, j = rng.integers(0, hw, pairs), rng.integers(0, hw, pairs)
    b = (a + rng.integers(1, n, pairs)) % n

    def means(p, k, q, m):
        sim = (flat[p, k] * flat[q, m]).sum(-1).numpy()
        return class_means(sim, lab[p, k], lab[q, m], n_classes)

    out = dict(zip(("within_same", "within_diff"), means(a, i, a, j)))
    out.update(zip(("across_same", "across_diff"), means(a, i, b, j)))
    out["across_diff_same_position"] = means(a, i, b, i)[1]
    out = {k: round(float(v), 4) for k, v in out.items()}
    out["by_image"] = round(out["within_diff"] - out["across_diff"], 4)
    out["by_position"] = round(out["across_diff_same_position"] - out["across_diff"], 4)
    out["class_gap"] = round(out["across_same"] - out["across_diff"], 4)
    return out


def diagnose(study) -> dict:
    """Per setting: the raw features' and each arm's seed-0 codes' similarity profile."""
    p = study.profile
    out = {"split": f"tune (seed {p.tune_seed})", "seed": 0, "settings": {}}
    for knob in study.knobs:
        images = study.knob(knob).tune[p.fidelity]
        entry = {"raw features": similarity_profile(images.feats, images.labels, p.n_classes)}
        for arm in study.arms:
            ckpt = study.run_dir(arm, knob, 0) / "checkpoints" / "final.pt"
            if ckpt.exists():
                codes = head_codes(load_checkpoint(ckpt).head, images.feats)
                entry[f"{arm} codes"] = similarity_profile(codes, images.labels, p.n_classes)
        out["settings"][knob.key] = entry
    return out


def diagnosis_markdown(diag: dict) -> str:
    """The README's section on F and the codes (docs/study/diagnosis.md): one row per
    (setting, representation)."""
    lines = ["## What F looks like and what the codes learn (tune split, seed 0)", "",
             "Mean cosine similarity of patch pairs (`python tools/study_diagnose.py`, "
             "`diagnosis.json`): *by image* = within-image minus across-image similarity "
             "of different-class pairs (what a per-image offset adds), *by position* = "
             "same grid position minus other positions across images (what a position "
             "pattern adds), *class gap* = same minus different class across images.", "",
             "| setting | representation | within image, same / different class | across "
             "images, same / different class | by image | by position | class gap |",
             "|---|---|---|---|---:|---:|---:|"]
    for knob, entry in diag.get("settings", {}).items():
        for name, s in entry.items():
            lines.append(f"| {knob} | {name} | {s['within_same']:.2f} / {s['within_diff']:.2f}"
                         f" | {s['across_same']:.2f} / {s['across_diff']:.2f} | "
                         f"{s['by_image']:+.2f} | {s['by_position']:+.2f} | "
                         f"{s['class_gap']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/study_diagnose.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="study")
    parser.add_argument("--out", required=True, help="the study's folder (--out of the study)")
    parser.add_argument("--data-root", default=None, help="where the study's data lie")
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile)
    if args.data_root:
        profile = profile.replace(data_root=args.data_root)
    study = Study(profile, Path(args.out), 1, "cpu", False, 100, "diagnose")
    diag = diagnose(study)
    save_json(Path(args.out) / "diagnosis.json", diag)
    if args.publish:  # the README's section, included by `python -m depthg_lib.study --publish`
        save_json(REPO_ROOT / "docs" / "study" / "diagnosis.json", diag)
        (REPO_ROOT / "docs" / "study" / "diagnosis.md").write_text(diagnosis_markdown(diag))
    print(json.dumps(diag)[:200])
    print(diagnosis_markdown(diag))
    return 0


if __name__ == "__main__":
    run_cli(main)
