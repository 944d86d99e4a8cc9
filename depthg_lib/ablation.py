"""The arms of chapter 06's factorial: what does each ingredient of DepthG buy, on one budget?

STEGO → DepthG changes two things at once: the depth term (docs/method.md §6.1) and where the
S×S training points lie (depth-guided FPS, §7.1). The factorial separates them — every arm is
the profile with only these settings replaced, and every arm trains with the same steps,
seeds, crops, kNN table, backbone and sample-count schedule:

| arm | depth term | sampling points |
|---|---|---|
| `stego-<fidelity>` | off | random |
| `depth-<fidelity>` | on | random |
| `fps-<fidelity>` | off | depth-guided FPS |
| `depthg-<fidelity>` | on | depth-guided FPS |

each in `released` fidelity (the released code: constant depth correlation, transposed FPS
points, 8-bit depth, nearest resizing; §13) and `corrected` fidelity (what the paper means).
`stego-released` and `stego-corrected` differ only in how crops are resized, so every arm has a
STEGO partner that shares all but the ingredient under test. The sample-count decay
(`fps_sample_decay`) stays as the profile says in every arm: it is a schedule of S, not part
of either ingredient.

`run_arm` trains one (arm, seed) resumably; `depthg_lib.study` runs the whole design.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import Profile
from .errors import DepthGError
from .io import recorded_settings_differ
from .train import TrainData, train
from .train import stage_settings as train_settings

FIDELITY_LABELS = {"released": "released", "corrected": "corrected"}
INGREDIENTS = {  # base name → (depth term on, FPS on), label
    "stego": ((False, False), "STEGO"),
    "depth": ((True, False), "+ depth term"),
    "fps": ((False, True), "+ FPS"),
    "depthg": ((True, True), "DepthG (both)"),
}
ARMS = {f"{base}-{fid}": f"{label}, {fid}" for fid in ("corrected", "released")
        for base, (_, label) in INGREDIENTS.items()}


def arm_factors(arm: str) -> tuple[bool, bool, str]:
    """(depth term on, FPS on, fidelity) of an arm name such as `depthg-corrected`."""
    base, _, fidelity = arm.partition("-")
    if base not in INGREDIENTS or fidelity not in FIDELITY_LABELS:
        raise DepthGError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)} "
                          "(set `study_arms` in the profile)")
    return (*INGREDIENTS[base][0], fidelity)


def stego_partner(arm: str) -> str:
    """The STEGO arm that shares everything with `arm` except its ingredients."""
    return f"stego-{arm_factors(arm)[2]}"


def schedule_every(share: float, steps: int, every: int) -> int:
    """Steps between two decays: `share` of the run (at least 1) when set, else `every`."""
    return max(1, round(share * steps)) if share > 0 else every


def arm_profile(profile: Profile, arm: str, steps: int | None = None,
                val_every: int | None = None) -> Profile:
    """The profile an arm trains with: only the settings that define the arm change, plus the
    budget every arm shares (`steps`, default `ablation_steps` or `steps`).

    With `depth_decay_share` / `fps_sample_decay_share` set, the decays happen after every
    that share of the arm's steps, so a longer or shorter run keeps the schedule's proportions
    (the released COCO-Stuff recipe: depth decay ×0.6 every 250 of 5,000 steps = 0.05, the
    sample count ×0.9 every 1,000 = 0.2)."""
    depth, fps, fidelity = arm_factors(arm)
    steps = steps or profile.ablation_steps or profile.steps
    val_every = min(val_every or steps, steps)
    return profile.replace(
        steps=steps, val_every=val_every, fidelity=fidelity, use_depth=depth,
        sampling="fps" if fps else "random",
        depth_decay_every=schedule_every(profile.depth_decay_share, steps,
                                         profile.depth_decay_every),
        fps_sample_decay_every=schedule_every(profile.fps_sample_decay_share, steps,
                                              profile.fps_sample_decay_every))


def run_arm(variant: Profile, run_dir: str | os.PathLike, seed: int, data: TrainData | None = None,
            device: str = "auto", progress: bool = True, force: bool = False) -> Path:
    """Train one (arm, seed) into `run_dir` and return its final checkpoint.

    A finished run with the same settings is reused; an interrupted one resumes from its last
    checkpoint; a run folder holding other settings (or other backbone weights) starts over —
    its result was not recorded, so nothing is lost.
    """
    run_dir = Path(run_dir)
    stale = force or recorded_settings_differ(run_dir, "train", train_settings(variant, seed))
    ckpts = run_dir / "checkpoints"
    unfinished = (ckpts / "last.pt").exists() and not (ckpts / "final.pt").exists()
    return train(variant, out_dir=run_dir, seed=seed, device=device, progress=progress,
                 force=stale, resume=unfinished and not stale, data=data)
