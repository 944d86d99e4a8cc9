"""What both pretraining runs share: data on disk, schedules, checkpoints, CSV logs.

A run lives in one folder (`--out`): `config.json` (settings; a resume with other settings is
refused), `checkpoint.pt` (written atomically every few minutes and at the end, with the RNG
state, so an interrupted run resumed with `--resume` continues exactly where it stopped) and
`log.csv` (one row per logged step).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import synthscenes
from ..errors import DepthGError
from ..io import atomic_path, check_stage_settings, load_json, read_label, read_rgb

# Seeds: pretraining data never overlaps the evaluation data of the quality bars.
PRETRAIN_DATA_SEED = 1000
DEFAULT_DATA_DIR = Path("data/synthscenes_pretrain")


# --------------------------------------------------------------------------- data

def ensure_synthscenes(data_dir: str | os.PathLike, n_train: int, n_val: int, size: int,
                       seed: int) -> Path:
    """Render SynthScenes into `data_dir` (resumable; `generate` refuses other settings)."""
    return synthscenes.generate(data_dir, n_train=n_train, n_val=n_val, size=size, seed=seed)


def data_record(data_dir: str | os.PathLike) -> dict:
    """The settings SynthScenes recorded for `data_dir` (renderer version included)."""
    path = Path(data_dir) / "synthscenes.json"
    return load_json(path) if path.exists() else {}


def load_split(data_dir: str | os.PathLike, split: str = "train", depth: bool = False,
               labels: bool = False, limit: int | None = None) -> dict[str, np.ndarray]:
    """Load a SynthScenes split into memory: images (N,H,W,3) uint8, optional depth / labels."""
    data_dir = Path(data_dir)
    paths = sorted((data_dir / "imgs" / split).glob("*.jpg"))[:limit]
    if not paths:
        raise DepthGError(f"no images in {data_dir / 'imgs' / split}; render them with "
                          f"`python -m depthg_lib.pretrain data --data {data_dir}`")
    out: dict[str, Any] = {"names": np.array([p.stem for p in paths])}
    out["images"] = np.stack([read_rgb(p) for p in tqdm(paths, desc=f"load {split}",
                                                         disable=len(paths) < 500)])
    if depth:
        out["depth"] = np.stack([
            np.load(data_dir / "depth_gt" / split / f"{p.stem}.npy").astype(np.float32)
            for p in paths])
    if labels:
        out["labels"] = np.stack([read_label(data_dir / "labels" / split / f"{p.stem}.png")
                                  for p in paths])
    return out


def minmax_normalise(depth: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min–max normalisation over the last two axes (docs/method.md §2 storage format)."""
    lo = depth.amin(dim=(-2, -1), keepdim=True)
    hi = depth.amax(dim=(-2, -1), keepdim=True)
    return (depth - lo) / (hi - lo).clamp_min(eps)


# --------------------------------------------------------------------------- schedules

def cosine(step: int, total: int, start: float, end: float, warmup: int = 0,
           warmup_from: float = 0.0) -> float:
    """Linear warm-up from `warmup_from` to `start`, then half-cosine from `start` to `end`."""
    if step < warmup:
        return warmup_from + (start - warmup_from) * step / max(1, warmup)
    t = (step - warmup) / max(1, total - warmup)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(1.0, t)))


# --------------------------------------------------------------------------- run folder

def machine_description() -> str:
    threads = torch.get_num_threads()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
            f"({threads} torch thread{'s' * (threads > 1)}), python {platform.python_version()}, "
            f"torch {torch.__version__}")


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this run, as `python -m depthg_lib.pretrain ...`."""
    return "python -m depthg_lib.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)


def result_settings(cfg: Any) -> dict:
    """A config's settings that change the result (not logging / checkpoint cadence)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items()
            if k not in ("log_every", "checkpoint_minutes")}


class RunDir:
    """A training run's folder: settings record, atomic checkpoints, CSV log."""

    def __init__(self, out: str | os.PathLike, kind: str, settings: dict, resume: bool):
        self.out = Path(out)
        self.kind = kind
        self.ckpt = self.out / "checkpoint.pt"
        self.log_path = self.out / "log.csv"
        if self.ckpt.exists() and not resume:
            raise DepthGError(
                f"{self.ckpt} exists: pass --resume to continue that run, or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        check_stage_settings(self.out, f"pretrain_{kind}", settings)

    def load(self) -> dict | None:
        if not self.ckpt.exists():
            return None
        try:
            return torch.load(self.ckpt, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is the same problem
            raise DepthGError(f"cannot read checkpoint {self.ckpt} ({err}); delete it to start "
                              "the run again") from None

    def save(self, state: dict) -> None:
        with atomic_path(self.ckpt) as tmp:
            torch.save(state, tmp)

    def log(self, row: dict, resumed_at: int | None = None) -> None:
        """Append one row; on the first call after a resume, drop rows past the checkpoint."""
        if resumed_at is not None and self.log_path.exists():
            with open(self.log_path) as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resumed_at]
            with atomic_path(self.log_path) as tmp, open(tmp, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                writer.writeheader()
                writer.writerows(rows)
        new = not self.log_path.exists()
        with open(self.log_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})


class Timer:
    """Wall time accumulated across resumes, and a 'time for a checkpoint?' clock."""

    def __init__(self, elapsed: float = 0.0, every_s: float = 180.0):
        self.start = time.time() - elapsed
        self.every_s = every_s
        self.last_save = time.time()

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def due(self) -> bool:
        if time.time() - self.last_save >= self.every_s:
            self.last_save = time.time()
            return True
        return False


def run_training(run: RunDir, trainer, cfg, data_dir, n_images: int, desc: str) -> dict:
    """The loop both pretrainings share: resume from `run`, step, log every `cfg.log_every`
    steps, checkpoint every `cfg.checkpoint_minutes` and at the end (tqdm progress)."""
    state = run.load()
    timer = Timer(every_s=cfg.checkpoint_minutes * 60)
    resumed_at = None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        timer = Timer(state["elapsed_s"], every_s=cfg.checkpoint_minutes * 60)
        resumed_at = trainer.step_idx
    bar = tqdm(total=cfg.steps, initial=trainer.step_idx, desc=desc,
               mininterval=1 if sys.stderr.isatty() else 60)
    renderer = data_record(data_dir).get("renderer_version")

    def save() -> None:
        run.save({"trainer": trainer.state_dict(), "elapsed_s": timer.elapsed,
                  "machine": machine_description(), "n_images": n_images,
                  "renderer_version": renderer})

    while trainer.step_idx < cfg.steps:
        stats = trainer.step()
        step = trainer.step_idx
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
            run.log({"step": step, "elapsed_s": round(timer.elapsed, 1), **stats},
                    resumed_at=resumed_at)
            resumed_at = None
            bar.set_postfix(loss=f"{stats['loss']:.3f}")
        if timer.due() or step == cfg.steps:
            save()
    bar.close()
    return {"steps": trainer.step_idx, "elapsed_s": timer.elapsed}
