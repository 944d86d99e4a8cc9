"""The entry points of chapter 06's study (`python -m depthg_lib.study`): starting or resuming a
study, and re-scoring the published heads on another report split."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..config import Profile, load_profile, profile_arg
from ..errors import DepthGError
from .fits import FitCache
from .runner import Study


def run_study(profile: Profile | str, out_dir: str | os.PathLike | None = None,
              seeds: int | None = None, report_seed: int | None = None, device: str = "auto",
              progress: bool = True, resume: bool = True, force: bool = False,
              n_boot: int = 1000, publish: str | os.PathLike | None = None,
              command: str | None = None, write_only: bool = False,
              fits_dir: str | os.PathLike | None = None) -> dict:
    """Run (or resume) the study of `profile` into `<out>/results.json` (default
    `runs/<profile>/study`), with `publish` (docs/study) there too. `write_only` trains and
    scores nothing new; `report_seed` re-scores the stored or shipped heads without training,
    keeping the fits on the training crops in `fits_dir` (default `<out>/rescore_fits`)."""
    profile = load_profile(profile)
    if report_seed is not None:
        profile = profile.replace(report_seed=int(report_seed))
    out = Path(out_dir) if out_dir is not None else profile.paths.run_dir / "study"
    store = out / "store.json"
    if force and out.exists():
        shutil.rmtree(out / "hists", ignore_errors=True)
        store.unlink(missing_ok=True)
    elif store.exists() and not resume:
        raise DepthGError(f"{store} holds an earlier study; continue it with --resume or "
                          "start over with --force")
    out.mkdir(parents=True, exist_ok=True)
    n = profile.ablation_seeds if seeds is None else int(seeds)
    if command is None:
        command = f"python -m depthg_lib.study --profile {profile_arg(profile)} --seeds {n}" + (
            f" --report-seed {report_seed}" if report_seed is not None else "")
    if fits_dir is None and report_seed is not None:
        fits_dir = out / "rescore_fits"
    with torch.random.fork_rng(devices=[]):
        study = Study(profile, out, n, device, progress, n_boot, command)
        study.write_only = write_only
        study.no_training = report_seed is not None
        study.fits = FitCache(fits_dir)
        return study.run(out / "results.json", Path(publish) if publish else None)


def rescore_published(report_seed: int, seeds: int = 1, profile: Profile | str = "study",
                      out_dir: str | os.PathLike | None = None, device: str = "auto",
                      progress: bool = False) -> dict:
    """The published study's shipped heads scored on a report split of your choosing, without
    training: the first camouflage setting (clean and every nuisance strength), the first
    `seeds` training seeds (one: intervals over the report images only). The fits on the
    training crops are kept in `rescore_fits/` beside the output folder."""
    p = load_profile(profile)
    p = p.replace(study_knob=list(p.study_knob[:1]))
    out = Path(out_dir) if out_dir is not None else (p.paths.run_dir / f"rescore{report_seed}")
    return run_study(p, out_dir=out, seeds=seeds, report_seed=report_seed, device=device,
                     progress=progress, resume=True, n_boot=500,
                     fits_dir=out.parent / "rescore_fits")
