"""The training run: refuse to mix runs, resume, loop over steps, validate, checkpoint.
Its record `train.json` holds the settings and the digests of what it trained on
(`TrainData.inputs`): a later run in its folder from changed inputs is refused unless `force`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import checkpoint
from .. import features as featcache
from ..config import Profile, load_profile, profile_arg
from ..env import resolve_device
from ..errors import DepthGError
from ..io import atomic_path, check_stage_settings, stage_lock
from ..models import load_backbone, profile_weights_identity
from . import distributed
from .data import (
    CachedBatches,
    CropBatches,
    StepSampler,
    TrainData,
    check_class_count,
    open_train_data,
    prepare_caches,
)
from .runlog import BEFORE_TRAINING, STEP_VALUES, RunLog
from .trainer import Trainer
from .validation import Validation

# Settings that do not change what training computes: a resumed run may differ in them.
BOOKKEEPING = frozenset({
    "name", "description", "source", "steps", "val_every", "val_images", "checkpoint_every",
    "num_workers", "precompute_features", "feature_cache_gb", "eval_res", "crf",
    "ablation_seeds", "ablation_steps", "depth_batch", "knn_block", "tune_seed", "report_seed",
    "study_n_report", "study_knob", "study_arms", "study_shift_offsets"})


def stage_settings(profile: Profile, seed: int) -> dict:
    """What a training run depends on (recorded in `train.json`; the ablation compares it)."""
    kept = {k: v for k, v in dataclasses.asdict(profile).items() if k not in BOOKKEEPING}
    return {**kept, "seed": seed, "backbone_weights_identity": profile_weights_identity(profile)}


def load_frozen_backbone(profile: Profile, device: torch.device):
    """The profile's backbone in eval mode with gradients off (channels-last on CUDA)."""
    backbone = load_backbone(profile.backbone, weights=profile.backbone_weights or None,
                             device=device)
    backbone.eval()
    for prm in backbone.parameters():
        prm.requires_grad_(False)
    if device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)
    return backbone


def _to_device(batch: dict, device: torch.device) -> dict:
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _flush(pending: list[dict], world: int) -> list[dict]:
    """Turn pending step records into plain rows with one device sync (and one all-reduce)."""
    values = distributed.mean_over_ranks(torch.stack([r["values"] for r in pending]), world)
    rows = []
    for rec, vals in zip(pending, values.cpu().tolist()):
        row = {k: rec[k] for k in ("step", "samples", "weight_depth", "shift_depth")}
        row.update(zip(STEP_VALUES, vals))
        rows.append(row)
    return rows


def train(profile: Profile | str, out_dir: str | os.PathLike | None = None,
          device: str | torch.device = "auto", resume: bool = False, seed: int | None = None,
          steps: int | None = None, progress: bool = True, *, force: bool = False,
          data: TrainData | None = None, log_every: int | None = None) -> Path:
    """Train the head of `profile` and return its final checkpoint (docs/method.md §8).

    `out_dir` defaults to `runs/<profile>/train`; `steps` and `seed` override the profile's.
    A finished run is not repeated; an unfinished one needs `resume` or `force` (start over).
    `data` replaces the profile's crops and kNN table (toy runs, tests). Step numbers are
    synchronised every `log_every` steps (default: 1 on CPU, 25 on CUDA)."""
    profile = load_profile(profile)
    command = f"python -m depthg_lib.train --profile {profile_arg(profile)}"
    command += (f" --out {out_dir}" if out_dir is not None else "") + (
        f" --seed {seed}" if seed is not None else "")
    seed = profile.seed if seed is None else int(seed)
    total_steps = profile.steps if steps is None else int(steps)
    if total_steps < 1:
        raise DepthGError(f"steps must be ≥ 1, got {total_steps}")
    device = resolve_device(device)
    rank, world, own_group = distributed.start(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    log_every = log_every or (25 if device.type == "cuda" else 1)
    out = Path(out_dir) if out_dir is not None else profile.paths.train_dir
    try:
        with contextlib.ExitStack() as held:
            if rank == 0:  # the only writer of the run folder
                held.enter_context(stage_lock(out, "train"))
            data = data if data is not None else open_train_data(profile)
            check_class_count(profile, data)
            backbone = load_frozen_backbone(profile, device)  # checked before train.json is
            _check_sample_grid(profile, backbone)  # written: a refused run leaves no record
            done = _check_previous_run(out, profile, seed, total_steps, resume, force, rank,
                                       world, data, command)
            if done is not None:
                return done
            if data.cache_dir is None:
                data = dataclasses.replace(data, cache_dir=out / "features")
            run = Run(profile, data, out, device, seed, total_steps, rank, world, log_every,
                      backbone=backbone)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                return _train(run, resume, progress and rank == 0)
    finally:
        if own_group:
            distributed.stop()


def _check_previous_run(out, profile, seed, total_steps, resume, force, rank, world, data,
                        command) -> Path | None:
    """Refuse to mix runs (other settings or inputs, unless `force`, which starts over);
    returns the final checkpoint if this exact run is already done."""
    last, final = out / "checkpoints" / "last.pt", out / "checkpoints" / "final.pt"
    if rank == 0:
        if force:
            for old in (last, checkpoint.previous_path(last), final, out / "log.csv"):
                old.unlink(missing_ok=True)
            shutil.rmtree(out / "tb", ignore_errors=True)
        check_stage_settings(out, "train", stage_settings(profile, seed), force=force,
                             inputs=data.inputs(), command=command)
    distributed.barrier(world)
    if resume:
        return None
    if final.exists():
        step = checkpoint.read_checkpoint(final)["step"]
        if step == total_steps:
            return final
        if step < total_steps:
            raise DepthGError(f"{out} holds a finished run of {step} steps, not {total_steps}; "
                              f"continue it with `{command} --resume --steps {total_steps}` or "
                              f"start over with `{command} --steps {total_steps} --force`")
        raise DepthGError(f"{out} holds a finished run of {step} steps, more than the "
                          f"{total_steps} asked for; use it as it is (`{command} --steps "
                          f"{step}`) or start over with `{command} --steps {total_steps} "
                          "--force`")
    if last.exists() or checkpoint.previous_path(last).exists():
        step = checkpoint.read_latest(last)[0]["step"]
        raise DepthGError(f"{out} holds an unfinished run (checkpoint at step {step}); continue "
                          f"it with `{command} --resume` or start over with `{command} --force`")
    return None


@dataclasses.dataclass
class Run:
    """What one training run holds while it loops: where it writes and what it steps with."""

    profile: Profile
    data: TrainData
    out: Path
    device: torch.device
    seed: int
    total_steps: int
    rank: int
    world: int
    log_every: int
    backbone: torch.nn.Module = None
    trainer: Trainer = None
    start: int = 0
    last_saved: int | None = None  # the step of the latest checkpoint written by this run

    @property
    def last(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def final(self) -> Path:
        return self.out / "checkpoints" / "final.pt"

    def due(self, done: int) -> tuple[bool, bool]:
        """(validate, checkpoint) after `done` steps; the same on every rank (a flush is a
        collective under DDP)."""
        p, end = self.profile, done == self.total_steps
        validate = self.data.val is not None and (done % p.val_every == 0 or end)
        return validate, done % p.checkpoint_every == 0 or end


def _train(run: Run, resume: bool, progress: bool) -> Path:
    """Set up (backbone, head, resume), then the loop of docs/method.md §8, then `final.pt`."""
    profile, data, device, rank, world = run.profile, run.data, run.device, run.rank, run.world
    run.trainer = Trainer(profile, run.backbone.dim, device, run.seed, rank, world)
    if resume:
        run.start = _resume(run)
        run.last_saved = run.start or None
    if run.start < run.total_steps:
        caches = (prepare_caches(profile, data, run.backbone, device, rank, world, progress)
                  if profile.precompute_features else {})
        validate = None
        if rank == 0 and data.val is not None:
            validate = Validation(profile, data.val, caches.get("val"), run.backbone, device)
        _loop(run, _loader(run, caches), validate, progress)
    if rank == 0:  # the last checkpoint is the final one
        _copy(run.last, run.final)
    distributed.barrier(world)
    return run.final


def _loop(run: Run, loader, validate, progress: bool) -> None:
    """The steps (docs/method.md §8): features, one trainer step; every `log_every` steps the
    numbers are synchronised, checked finite and written; validation, checkpoints when due."""
    log = RunLog(run.out, run.start, enabled=run.rank == 0)
    if run.start == 0 and validate is not None:  # where the curve starts: the untrained head
        log.write([{"step": BEFORE_TRAINING, **validate(run.trainer.model)}])
    bar = tqdm(total=run.total_steps, initial=run.start, desc=f"train {run.profile.name}",
               disable=not progress, dynamic_ncols=True)
    pending: list[dict] = []
    try:
        for batch in loader:
            batch = _to_device(batch, run.device)
            feats, feats_pos = _features(batch, run.backbone)
            pending.append(run.trainer.step(batch["step"], feats, feats_pos,
                                            batch["label"].long(), batch["depth"],
                                            batch["depth_pos"]))
            done = batch["step"] + 1
            is_val, is_ckpt = run.due(done)
            if len(pending) >= run.log_every or is_val or is_ckpt:
                rows = _flush(pending, run.world)
                pending = []
                _stop_if_diverged(rows, log, run)
                if is_val and validate is not None:
                    rows[-1].update(validate(run.trainer.model))
                log.write(rows)
                bar.set_postfix(loss=f"{rows[-1]['total']:.4f}", S=rows[-1]["samples"])
            if is_ckpt:
                _checkpoint(run, done)
            bar.update(1)
    finally:
        bar.close()
        log.close()


def _check_sample_grid(profile: Profile, backbone) -> None:
    grid = profile.res // backbone.patch_size
    if profile.samples > grid:
        raise DepthGError(f"profile {profile.name}: the sample grid S = {profile.samples} is "
                          f"larger than the {grid}×{grid} feature grid ({profile.res} px / patch "
                          f"{backbone.patch_size}); lower `samples` or raise `res`")


def _resume(run: Run) -> int:
    """Load the latest readable checkpoint (`last.pt`, else `previous.pt`) into the trainer and
    the random generators; returns its step (0 when there is none)."""
    if not (run.last.exists() or checkpoint.previous_path(run.last).exists()):
        return 0
    state, source = checkpoint.read_latest(run.last, run.device)
    checkpoint.check_compatible(state, run.profile, source)
    run.trainer.load_state_dict(state)
    checkpoint.set_rng_state({**state["rng"], "torch": state["rng"]["torch"].cpu()})
    start = int(state["step"])
    if start > run.total_steps:
        raise DepthGError(f"checkpoint {source} is at step {start}, beyond --steps "
                          f"{run.total_steps}; pass --steps {start} or more")
    if run.rank == 0 and source != run.last:  # the previous one becomes the latest again
        _copy(source, run.last)
    return start


def _loader(run: Run, caches: dict) -> torch.utils.data.DataLoader:
    """Batches of steps start..total_steps − 1 in their seeded order (§8 step 1): cached
    features when `precompute_features`, else crops to run the backbone on."""
    p = run.profile
    sampler = StepSampler(run.data.knn, p.knn_k, p.batch_size, run.seed, run.start,
                          run.total_steps, run.rank, run.world)
    dataset = (CachedBatches(caches["train"]) if "train" in caches
               else CropBatches(run.data.train, p.res, p.fidelity))
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=p.num_workers,
        pin_memory=run.device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if p.num_workers else None)


def _features(batch: dict, backbone) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of the crops and their positives (§8 step 2): cached, or the ViT's."""
    if "feats" in batch:
        return batch["feats"].float(), batch["feats_pos"].float()
    both = featcache.featurize(backbone, torch.cat([batch["image"], batch["image_pos"]]))
    return both.float().chunk(2)


def _stop_if_diverged(rows: list[dict], log: RunLog, run: Run) -> None:
    """Log up to the first non-finite number and stop with an error naming step and term."""
    bad = next(((row["step"], k, row[k]) for row in rows for k in STEP_VALUES
                if not math.isfinite(row[k])), None)
    if bad is None:
        return
    log.write([r for r in rows if r["step"] <= bad[0]])
    kept = (f"the last good checkpoint {run.last} (step {run.last_saved}) is kept"
            if run.last_saved is not None else "no checkpoint had been written yet")
    raise DepthGError(f"training diverged at step {bad[0]}: loss term {bad[1]!r} is {bad[2]}; "
                      f"{kept}. Lower the learning rate or check the inputs, then resume "
                      f"with --resume or start over with --force")


def _checkpoint(run: Run, done: int) -> None:
    """`checkpoints/last.pt` after `done` steps (the one before kept as `previous.pt`)."""
    if run.rank == 0:
        checkpoint.save_checkpoint(run.last, run.trainer.state_dict(), run.profile, done,
                                   run.seed, run.backbone)
    run.last_saved = done


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
