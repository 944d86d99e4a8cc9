"""The arms of chapter 06's factorial: what each ingredient of DepthG buys, on one budget. An arm
(`stego`, `depth` (the term, docs/method.md §6.1), `fps` (depth-guided FPS, §7.1), `depthg`) in
`released` or `corrected` fidelity (§13) is the profile with only these settings replaced;
everything else is shared. `depthg_lib.study` runs the design."""

from __future__ import annotations

import os
from pathlib import Path

from .config import Profile
from .errors import DepthGError
from .io import recorded_settings_differ
from .train import TrainData, train
from .train import stage_settings as train_settings

FIDELITIES = ("corrected", "released")
INGREDIENTS = {  # base name → (depth term on, FPS on), label
    "stego": ((False, False), "STEGO"),
    "depth": ((True, False), "+ depth term"),
    "fps": ((False, True), "+ FPS"),
    "depthg": ((True, True), "DepthG (both)"),
}
ARMS = {f"{base}-{fid}": f"{label}, {fid}" for fid in FIDELITIES
        for base, (_, label) in INGREDIENTS.items()}


def arm_factors(arm: str) -> tuple[bool, bool, str]:
    """(depth term on, FPS on, fidelity) of an arm name such as `depthg-corrected`."""
    base, _, fidelity = arm.partition("-")
    if base not in INGREDIENTS or fidelity not in FIDELITIES:
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
    """The profile an arm trains with: its settings, the budget every arm shares (`steps`,
    default `ablation_steps` or `steps`) and decays as a share of it where `*_decay_share` is."""
    depth, fps, fidelity = arm_factors(arm)
    steps = steps or profile.ablation_steps or profile.steps
    return profile.replace(
        steps=steps, val_every=min(val_every or steps, steps), fidelity=fidelity, use_depth=depth,
        sampling="fps" if fps else "random",
        depth_decay_every=schedule_every(profile.depth_decay_share, steps,
                                         profile.depth_decay_every),
        fps_sample_decay_every=schedule_every(profile.fps_sample_decay_share, steps,
                                              profile.fps_sample_decay_every))


def run_arm(variant: Profile, run_dir: str | os.PathLike, seed: int, data: TrainData | None = None,
            device: str = "auto", progress: bool = True, force: bool = False) -> Path:
    """Train one (arm, seed) into `run_dir`, returning its final checkpoint: a finished run of
    the same settings is reused, an interrupted one resumes, one of other settings starts over."""
    run_dir = Path(run_dir)
    stale = force or recorded_settings_differ(run_dir, "train", train_settings(variant, seed))
    ckpts = run_dir / "checkpoints"
    unfinished = (ckpts / "last.pt").exists() and not (ckpts / "final.pt").exists()
    return train(variant, out_dir=run_dir, seed=seed, device=device, progress=progress,
                 force=stale, resume=unfinished and not stale, data=data)
