"""What both pretraining runs share: data on disk, the schedule, the trainer's state, the loop.

A run lives in one folder (`--out`): `pretrain_<kind>.json` (settings; a resume with other
settings is refused), `checkpoint.pt` (written atomically every few minutes and at the end, with
the generator's state, so `--resume` continues exactly where the run stopped) and `log.csv`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..embedded import EMBEDDED_MEAN, EMBEDDED_STD
from ..errors import DepthGError
from ..io import atomic_path, check_stage_settings, load_json, read_rgb

# Seeds: pretraining data never overlaps the evaluation data of the quality bars.
PRETRAIN_DATA_SEED = 1000
DEFAULT_DATA_DIR = Path("data/synthscenes_pretrain")
_MEAN = torch.tensor(EMBEDDED_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(EMBEDDED_STD).view(1, 3, 1, 1)


def data_record(data_dir: str | os.PathLike) -> dict:
    """The settings SynthScenes recorded for `data_dir` (renderer version included)."""
    path = Path(data_dir) / "synthscenes.json"
    return load_json(path) if path.exists() else {}


def load_split(data_dir: str | os.PathLike, split: str = "train", depth: bool = False,
               limit: int | None = None) -> dict[str, np.ndarray]:
    """Load a SynthScenes split into memory: names, images (N,H,W,3) uint8, optional depth."""
    data_dir = Path(data_dir)
    paths = sorted((data_dir / "imgs" / split).glob("*.jpg"))[:limit]
    if not paths:
        raise DepthGError(f"no images in {data_dir / 'imgs' / split}; render them with "
                          f"`python -m depthg_lib.data.synthscenes --out {data_dir} ...`")
    out = {"names": np.array([p.stem for p in paths]),
           "images": np.stack([read_rgb(p) for p in tqdm(paths, desc=f"load {split}",
                                                         disable=len(paths) < 500)])}
    if depth:
        out["depth"] = np.stack([
            np.load(data_dir / "depth_gt" / split / f"{p.stem}.npy").astype(np.float32)
            for p in paths])
    return out


def normalise_rgb(images: torch.Tensor) -> torch.Tensor:
    """[0,1] RGB (B,3,H,W) → the embedded models' input (ImageNet mean and std)."""
    return (images - _MEAN) / _STD


def minmax_normalise(depth: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min–max normalisation over the last two axes (docs/method.md §2 storage format)."""
    lo = depth.amin(dim=(-2, -1), keepdim=True)
    hi = depth.amax(dim=(-2, -1), keepdim=True)
    return (depth - lo) / (hi - lo).clamp_min(eps)


def cosine(step: int, total: int, start: float, end: float, warmup: int = 0) -> float:
    """Linear warm-up from 0 to `start`, then half-cosine from `start` to `end`."""
    if step < warmup:
        return start * step / max(1, warmup)
    t = (step - warmup) / max(1, total - warmup)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(1.0, t)))


class Trainer:
    """Model, AdamW and the one generator every random draw comes from, all in the checkpoint,
    so a resumed run continues exactly; subclasses build `opt` and define `step()`."""

    key = "net"  # the model's name in the checkpoint

    def __init__(self, cfg: Any, images: torch.Tensor, build: Callable[[], torch.nn.Module]):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.images = images  # (N,3,H,W) uint8
        self.model = build()
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0

    def state_dict(self) -> dict:
        return {self.key: self.model.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "step": self.step_idx,
                "config": dataclasses.asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state[self.key])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.step_idx = state["step"]

    def set_lr(self) -> float:
        """This step's learning rate: linear warm-up, then cosine to `min_lr`."""
        cfg = self.cfg
        lr = cosine(self.step_idx, cfg.steps, cfg.lr, cfg.min_lr,
                    warmup=int(cfg.warmup_frac * cfg.steps))
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    def update(self, loss: torch.Tensor, clip: float) -> float:
        """One optimiser step on `loss` (gradient norm clipped to `clip`); the norm before it."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self.step_idx += 1
        return float(grad_norm)


def _load_checkpoint(out: Path) -> dict | None:
    """The run's checkpoint (None for a new run); log rows past it go, as those steps run again."""
    ckpt, log = out / "checkpoint.pt", out / "log.csv"
    if not ckpt.exists():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is the same problem
        raise DepthGError(f"cannot read checkpoint {ckpt} ({err}); delete it to start the run "
                          "again") from None
    if log.exists():
        with open(log) as fh:
            reader = csv.DictReader(fh)
            rows = [r for r in reader if int(r["step"]) <= state["trainer"]["step"]]
        with atomic_path(log) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=reader.fieldnames)
            writer.writeheader()
            writer.writerows(rows)
    return state


def _log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


class Timer:
    """Wall time accumulated across resumes, and a 'time for a checkpoint?' clock."""

    def __init__(self, elapsed: float, every_s: float):
        self.start, self.every_s, self.last_save = time.time() - elapsed, every_s, time.time()

    def elapsed(self) -> float:
        return time.time() - self.start

    def due(self) -> bool:
        if time.time() - self.last_save < self.every_s:
            return False
        self.last_save = time.time()
        return True


def _machine() -> str:
    threads = torch.get_num_threads()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
            f"({threads} torch thread{'s' * (threads > 1)}), python {platform.python_version()}, "
            f"torch {torch.__version__}")


def run_training(out: str, kind: str, architecture: dict, cfg: Any, data_dir: str, resume: bool,
                 make: Callable[[torch.Tensor, dict], Trainer]) -> dict:
    """Run (or resume) a pretraining in `out`: `make(images, data)` builds the trainer; log
    every `cfg.log_every` steps, checkpoint every `cfg.checkpoint_minutes` and at the end."""
    settings = {"kind": kind, "architecture": architecture, **{
        k: v for k, v in dataclasses.asdict(cfg).items()
        if k not in ("log_every", "checkpoint_minutes")}}  # these do not change the result
    out = Path(out)
    if (out / "checkpoint.pt").exists() and not resume:
        raise DepthGError(f"{out / 'checkpoint.pt'} exists: pass --resume to continue that run, "
                          "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    check_stage_settings(out, f"pretrain_{kind}", settings)
    data = load_split(data_dir, "train", depth=kind == "depth", limit=cfg.n_train)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
    trainer = make(images, data)
    state = _load_checkpoint(out)
    if state is not None:
        trainer.load_state_dict(state["trainer"])
    timer = Timer(state["elapsed_s"] if state else 0.0, every_s=cfg.checkpoint_minutes * 60)
    bar = tqdm(total=cfg.steps, initial=trainer.step_idx, desc=f"pretrain {kind}",
               mininterval=1 if sys.stderr.isatty() else 60)
    renderer = data_record(data_dir).get("renderer_version")
    while trainer.step_idx < cfg.steps:
        stats = trainer.step()
        step = trainer.step_idx
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
            _log(out / "log.csv", {"step": step, "elapsed_s": round(timer.elapsed(), 1), **stats})
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
        if timer.due() or step == cfg.steps:
            with atomic_path(out / "checkpoint.pt") as tmp:
                torch.save({"trainer": trainer.state_dict(), "elapsed_s": timer.elapsed(),
                            "machine": _machine(), "n_images": len(images),
                            "renderer_version": renderer}, tmp)
    bar.close()
    return {"steps": trainer.step_idx, "elapsed_s": timer.elapsed()}
