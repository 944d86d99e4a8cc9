"""What F looks like and what the codes learn, at each setting of a finished study.

    python -m depthg_lib.study.diagnose --profile study --out DIR [--publish]

For each setting, on the tune images as the arms saw them (nuisance included), and for the raw
features and each arm's seed-0 codes: the mean cosine similarity of patch pairs

- within one image and across two images, of the same class and of different classes;
- across two images, of different classes, at the same grid position and at other positions.

`by_image` (within-image minus across-image similarity of different-class pairs) says how much
a representation groups patches by the image they come from (a per-image offset does that);
`by_position` (same position minus other positions) how much by where they sit on the grid (a
position pattern does that); `class_gap` (same minus different class across images) how much
by class. Written to `<out>/diagnosis.json` (and `docs/study/diagnosis.json` with --publish).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint
from ..config import REPO_ROOT, load_profile
from ..errors import run_cli
from ..io import save_json
from .readme import diagnosis_table
from .runner import Study
from .scoring import head_codes
from .splits import knob_key


@torch.no_grad()
def similarity_profile(maps: torch.Tensor, labels: np.ndarray, n_classes: int,
                       pairs: int = 40000, seed: int = 0) -> dict:
    """The pair similarities above for (N, C, h, w) maps and (N, H, W) labels (−1 ignored)."""
    x = F.normalize(maps.float(), dim=1)
    n, c, h, w = x.shape
    lab = F.interpolate(torch.from_numpy(labels).float()[:, None], size=(h, w),
                        mode="nearest")[:, 0].long().reshape(n, -1).numpy()
    flat = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, pairs)
    i, j = rng.integers(0, h * w, pairs), rng.integers(0, h * w, pairs)
    b = (a + rng.integers(1, n, pairs)) % n

    def sim(p, q, k, m):
        return (flat[p, k] * flat[q, m]).sum(-1).numpy()

    def valid(la, lb):
        return (la >= 0) & (lb >= 0) & (la < n_classes) & (lb < n_classes)

    within, across, same_pos = sim(a, a, i, j), sim(a, b, i, j), sim(a, b, i, i)
    lw, la_, lp = (lab[a, i], lab[a, j]), (lab[a, i], lab[b, j]), (lab[a, i], lab[b, i])
    out = {
        "within_same": within[valid(*lw) & (lw[0] == lw[1])].mean(),
        "within_diff": within[valid(*lw) & (lw[0] != lw[1])].mean(),
        "across_same": across[valid(*la_) & (la_[0] == la_[1])].mean(),
        "across_diff": across[valid(*la_) & (la_[0] != la_[1])].mean(),
        "across_diff_same_position": same_pos[valid(*lp) & (lp[0] != lp[1])].mean(),
    }
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
        kd = study.knob(knob)
        images = kd.tune[p.fidelity]
        entry = {"raw features": similarity_profile(images.feats, images.labels, p.n_classes)}
        for arm in study.arms:
            ckpt = study.run_dir(arm, knob, 0) / "checkpoints" / "final.pt"
            if not ckpt.exists():
                continue
            model = load_checkpoint(ckpt)
            codes = head_codes(model.head, images.feats)
            entry[f"{arm} codes"] = similarity_profile(codes, images.labels, p.n_classes)
        out["settings"][knob_key(knob)] = entry
    return out




def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.study.diagnose",
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
    if args.publish:
        save_json(REPO_ROOT / "docs" / "study" / "diagnosis.json", diag)
    print(json.dumps(diag)[:200])
    print(diagnosis_table(diag))
    return 0


if __name__ == "__main__":
    run_cli(main)
