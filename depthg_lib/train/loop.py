"""The training run (docs/method.md §8): refuse to mix runs, resume, loop over the steps,
validate, checkpoint, stop on divergence. `train.json` holds the settings and the digests of
the inputs (`TrainData.inputs`): a later run there from changed inputs needs `force`."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .. import checkpoint
from .. import features as featcache
from ..config import Profile, load_profile, profile_arg
from ..env import resolve_device
from ..errors import DepthGError
from ..io import atomic_path, check_stage_settings, stage_lock
from ..models import load_backbone, profile_weights_identity
from .data import (
    CachedBatches,
    CropBatches,
    StepSampler,
    TrainData,
    barrier,
    check_class_count,
    open_train_data,
    prepare_caches,
)
from .runlog import BEFORE_TRAINING, SCHEDULE, STEP_VALUES, RunLog
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
                             device=device).eval().requires_grad_(False)
    if device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)
    return backbone


def train(profile: Profile | str, out_dir: str | os.PathLike | None = None,
          device: str | torch.device = "auto", resume: bool = False, seed: int | None = None,
          steps: int | None = None, progress: bool = True, *, force: bool = False,
          data: TrainData | None = None) -> Path:
    """Train the head of `profile` in `out_dir` (runs/<profile>/train) and return its final
    checkpoint. A finished run is not repeated; an unfinished one needs `resume` or `force`
    (start over). `data` replaces the profile's crops and kNN table (toy runs, tests)."""
    profile = load_profile(profile)
    command = f"python -m depthg_lib.train --profile {profile_arg(profile)}"
    command += (f" --out {out_dir}" if out_dir is not None else "") + (
        f" --seed {seed}" if seed is not None else "")
    seed = profile.seed if seed is None else int(seed)
    total_steps = profile.steps if steps is None else int(steps)
    if total_steps < 1:
        raise DepthGError(f"steps must be ≥ 1, got {total_steps}")
    device = resolve_device(device)
    rank, world, own_group = _processes(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    out = Path(out_dir) if out_dir is not None else profile.paths.train_dir
    try:
        # rank 0 is the only writer of the run folder
        with stage_lock(out, "train") if rank == 0 else contextlib.nullcontext():
            data = data if data is not None else open_train_data(profile)
            check_class_count(profile, data)
            backbone = load_frozen_backbone(profile, device)
            grid = profile.res // backbone.patch_size  # before train.json: refused, no record
            if profile.samples > grid:
                raise DepthGError(f"profile {profile.name}: the sample grid S = {profile.samples} "
                                  f"is larger than the {grid}×{grid} feature grid ({profile.res} "
                                  f"px / patch {backbone.patch_size}); lower `samples` or raise "
                                  "`res`")
            done = _check_previous_run(out, profile, seed, total_steps, resume, force, rank,
                                       world, data, command)
            if done is not None:
                return done
            if data.cache_dir is None:
                data = dataclasses.replace(data, cache_dir=out / "features")
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                run = Run(profile, data, out, device, seed, total_steps, rank, world, backbone)
                return run.train(resume, progress and rank == 0)
    finally:
        if own_group:
            dist.destroy_process_group()


def _processes(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group); torchrun sets WORLD_SIZE."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


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
    barrier(world)
    if resume:
        return None
    if final.exists():
        step = checkpoint.read_checkpoint(final)["step"]
        if step == total_steps:
            return final
        fix = (f"continue it with `{command} --resume --steps {total_steps}`"
               if step < total_steps else f"use it as it is (`{command} --steps {step}`)")
        raise DepthGError(f"{out} holds a finished run of {step} steps, not {total_steps}; "
                          f"{fix} or start over with `{command} --steps {total_steps} --force`")
    if last.exists() or checkpoint.previous_path(last).exists():
        step = checkpoint.read_latest(last)[0]["step"]
        raise DepthGError(f"{out} holds an unfinished run (checkpoint at step {step}); continue "
                          f"it with `{command} --resume` or start over with `{command} --force`")
    return None


class Run:
    """One training run: where it writes, what it steps with, its latest checkpoint."""

    def __init__(self, profile: Profile, data: TrainData, out: Path, device: torch.device,
                 seed: int, total_steps: int, rank: int, world: int, backbone):
        self.profile, self.data, self.out, self.device = profile, data, out, device
        self.seed, self.total_steps, self.rank, self.world = seed, total_steps, rank, world
        self.backbone = backbone
        self.trainer = Trainer(profile, backbone.dim, device, seed, rank, world)
        self.last, self.final = out / "checkpoints" / "last.pt", out / "checkpoints" / "final.pt"
        self.start, self.last_saved = 0, None  # last_saved: this run's latest checkpoint step
        self.log_every = 25 if device.type == "cuda" else 1  # steps between host syncs

    def train(self, resume: bool, progress: bool) -> Path:
        """Resume, set up the data, then the steps, then `final.pt`."""
        p, data = self.profile, self.data
        if resume:
            self.start = self.resume()
            self.last_saved = self.start or None
        if self.start < self.total_steps:
            caches = (prepare_caches(p, data, self.backbone, self.device, self.rank, self.world,
                                     progress) if p.precompute_features else {})
            validate = (Validation(p, data.val, caches.get("val"), self.backbone, self.device)
                        if self.rank == 0 and data.val is not None else None)
            self.loop(self.loader(caches), validate, progress)
        if self.rank == 0:  # the last checkpoint is the final one
            _copy(self.last, self.final)
        barrier(self.world)
        return self.final

    def resume(self) -> int:
        """Load the latest intact checkpoint (`last.pt`, else `previous.pt`) into the trainer
        and the random generators; returns its step (0 when there is none)."""
        if not (self.last.exists() or checkpoint.previous_path(self.last).exists()):
            return 0
        state, source = checkpoint.read_latest(self.last, self.device)
        checkpoint.check_compatible(state, self.profile, source)
        self.trainer.load_state_dict(state)
        checkpoint.set_rng_state({**state["rng"], "torch": state["rng"]["torch"].cpu()})
        start = int(state["step"])
        if start > self.total_steps:
            raise DepthGError(f"checkpoint {source} is at step {start}, beyond --steps "
                              f"{self.total_steps}; pass --steps {start} or more")
        if self.rank == 0 and source != self.last:  # the previous one becomes the latest again
            _copy(source, self.last)
        return start

    def loader(self, caches: dict) -> torch.utils.data.DataLoader:
        """§8 step 1: the batches of steps start … total_steps − 1 in their seeded order, as
        cached features when `precompute_features`, else crops to run the backbone on."""
        p = self.profile
        sampler = StepSampler(self.data.knn, p.knn_k, p.batch_size, self.seed, self.start,
                              self.total_steps, self.rank, self.world)
        dataset = (CachedBatches(caches["train"]) if "train" in caches
                   else CropBatches(self.data.train, p.res, p.fidelity))
        return torch.utils.data.DataLoader(
            dataset, batch_size=None, sampler=sampler, num_workers=p.num_workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if p.num_workers else None)

    def loop(self, loader, validate, progress: bool) -> None:
        """The steps: each batch's frozen features (§8 step 2), one trainer step (3–6); every
        `log_every` steps the numbers are synchronised, checked finite and logged; validation
        and checkpoints when due."""
        p, log = self.profile, RunLog(self.out, self.start, enabled=self.rank == 0)
        if self.start == 0 and validate is not None:  # where the curves start: untrained head
            log.write([{"step": BEFORE_TRAINING, **validate(self.trainer.model)}])
        bar = tqdm(total=self.total_steps, initial=self.start, desc=f"train {p.name}",
                   disable=not progress, dynamic_ncols=True)
        pending: list[dict] = []
        try:
            for batch in loader:
                batch = {k: v.to(self.device, non_blocking=self.device.type == "cuda")
                         if torch.is_tensor(v) else v for k, v in batch.items()}
                feats, feats_pos = _features(batch, self.backbone)
                pending.append(self.trainer.step(batch["step"], feats, feats_pos,
                                                 batch["label"].long(), batch["depth"],
                                                 batch["depth_pos"]))
                done = batch["step"] + 1
                end = done == self.total_steps  # due the same on every rank: a flush is collective
                is_val = self.data.val is not None and (done % p.val_every == 0 or end)
                is_ckpt = done % p.checkpoint_every == 0 or end
                if len(pending) >= self.log_every or is_val or is_ckpt:
                    rows = _flush(pending, self.world)
                    pending = []
                    self.stop_if_diverged(rows, log)
                    if is_val and validate is not None:
                        rows[-1].update(validate(self.trainer.model))
                    log.write(rows)
                    bar.set_postfix(loss=f"{rows[-1]['total']:.4f}", S=rows[-1]["samples"])
                if is_ckpt:  # last.pt, the one before kept as previous.pt
                    if self.rank == 0:
                        checkpoint.save_checkpoint(self.last, self.trainer.state_dict(), p, done,
                                                   self.seed, self.backbone)
                    self.last_saved = done
                bar.update(1)
        finally:
            bar.close()
            log.close()

    def stop_if_diverged(self, rows: list[dict], log: RunLog) -> None:
        """Log up to the first non-finite number and stop with an error naming step and term."""
        bad = next(((row["step"], k, row[k]) for row in rows for k in STEP_VALUES
                    if not math.isfinite(row[k])), None)
        if bad is None:
            return
        log.write([r for r in rows if r["step"] <= bad[0]])
        kept = (f"the last good checkpoint {self.last} (step {self.last_saved}) is kept"
                if self.last_saved is not None else "no checkpoint had been written yet")
        raise DepthGError(f"training diverged at step {bad[0]}: loss term {bad[1]!r} is "
                          f"{bad[2]}; {kept}. Lower the learning rate or check the inputs, then "
                          "resume with --resume or start over with --force")


def _features(batch: dict, backbone) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features of the crops and their positives: cached, or the ViT's."""
    if "feats" in batch:
        return batch["feats"].float(), batch["feats_pos"].float()
    both = featcache.featurize(backbone, torch.cat([batch["image"], batch["image_pos"]]))
    return both.float().chunk(2)


def _flush(pending: list[dict], world: int) -> list[dict]:
    """Pending step records as plain rows, with one device sync (and one all-reduce)."""
    values = torch.stack([r["values"] for r in pending])
    if world > 1:  # the mean over ranks: every rank flushes at the same steps
        dist.all_reduce(values)
        values = values / world
    return [{"step": rec["step"], **{k: rec[k] for k in SCHEDULE}, **dict(zip(STEP_VALUES, vals))}
            for rec, vals in zip(pending, values.cpu().tolist())]


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
