"""Supervised training of the embedded depth network on SynthScenes ground-truth depth.

Target: per-image min–max normalised depth (docs/method.md §2). Loss: MiDaS-style scale-and-
shift-invariant L1 + α·multi-scale gradient matching (α = 0.5), plus β·L1 of the min–max
normalised prediction (β = 1), without which the extremes (nearest point, sky) drifted and with
them every stored value. Whole 128-px scenes: the horizon is a whole-image cue."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..embedded import DEPTH_CONFIG, build_embedded_depth_net
from . import augment
from .common import PRETRAIN_DATA_SEED, Trainer, minmax_normalise, normalise_rgb, run_training


@dataclass(frozen=True)
class DepthPretrainConfig:
    steps: int = 1500
    batch: int = 12
    seed: int = 0
    crop: int = 128  # = the scene size: whole images (the horizon is a whole-image cue)
    lr: float = 2e-3
    min_lr: float = 2e-5
    warmup_frac: float = 0.03
    weight_decay: float = 1e-4
    grad_weight: float = 0.5
    minmax_weight: float = 1.0
    grad_scales: int = 4
    log_every: int = 10
    checkpoint_minutes: float = 3.0
    data_seed: int = PRETRAIN_DATA_SEED
    data_size: int = 128
    n_train: int = 5000


def align_scale_shift(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares per-image scale and shift of `pred` (B,H,W) onto `target`."""
    p = pred.flatten(1)
    t = target.flatten(1)
    pm, tm = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
    var = ((p - pm) ** 2).mean(1, keepdim=True)
    cov = ((p - pm) * (t - tm)).mean(1, keepdim=True)
    s = cov / var.clamp_min(1e-12)
    return (s * (p - pm) + tm).view_as(pred)


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, grad_weight: float = 0.5,
             scales: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale-and-shift-invariant L1 plus multi-scale gradient matching; returns (total, l1)."""
    diff = align_scale_shift(pred, target) - target
    l1 = diff.abs().mean()
    grad = pred.new_zeros(())
    d = diff[:, None]
    for k in range(scales):
        if k:
            d = F.avg_pool2d(d, 2)
        grad = grad + (d[..., 1:, :] - d[..., :-1, :]).abs().mean() + \
            (d[..., :, 1:] - d[..., :, :-1]).abs().mean()
    return l1 + grad_weight * grad, l1


class DepthTrainer(Trainer):
    def __init__(self, cfg: DepthPretrainConfig, images: torch.Tensor, depth: torch.Tensor):
        super().__init__(cfg, images, build_embedded_depth_net)
        self.target = minmax_normalise(depth)  # (N,H,W) float, sky = 1
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, gen = self.cfg, self.gen
        n, _, h, w = self.images.shape
        idx = torch.randint(n, (cfg.batch,), generator=gen)
        c = min(cfg.crop, h, w)
        top = torch.randint(0, h - c + 1, (cfg.batch,), generator=gen)
        left = torch.randint(0, w - c + 1, (cfg.batch,), generator=gen)
        flip = torch.rand(cfg.batch, generator=gen) < 0.5
        x = torch.stack([self.images[i, :, t:t + c, l_:l_ + c]
                         for i, t, l_ in zip(idx, top, left)]).float() / 255
        y = torch.stack([self.target[i, t:t + c, l_:l_ + c] for i, t, l_ in zip(idx, top, left)])
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        y = torch.where(flip[:, None, None], y.flip(-1), y)
        # mild photometric jitter: depth must not hinge on exact colours
        x = augment.color_jitter(x, gen, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.03)
        # re-normalise the crop's target so it is min–max normalised like the stored format
        return normalise_rgb(x), minmax_normalise(y)

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        lr = self.set_lr()
        self.model.train()
        x, y = self._batch()
        pred = self.model(x)[:, 0]
        loss, l1 = ssi_loss(pred, y, cfg.grad_weight, cfg.grad_scales)
        mm = (minmax_normalise(pred) - y).abs().mean()
        loss = loss + cfg.minmax_weight * mm
        grad_norm = self.update(loss, 5.0)
        return {"loss": loss.item(), "ssi_l1": l1.item(), "minmax_mae": mm.item(), "lr": lr,
                "grad_norm": grad_norm}


def train_depth(out: str, cfg: DepthPretrainConfig, data_dir: str, resume: bool = False) -> dict:
    """Run (or resume) depth-network training in `out`; returns the run summary."""
    return run_training(out, "depth", DEPTH_CONFIG, cfg, data_dir, resume,
                        lambda images, data: DepthTrainer(cfg, images,
                                                          torch.from_numpy(data["depth"])))
