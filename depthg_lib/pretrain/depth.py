"""Supervised training of the embedded depth network on SynthScenes ground-truth depth.

Target: per-image min–max normalised depth d̂ ∈ [0,1], larger = farther, sky = far plane = 1
(the format the depth stage stores, docs/method.md §2). Loss (MiDaS-style, scale-and-shift
invariant): the prediction p is aligned to the target per image by least squares,
`(s, t) = argmin Σ_i (s·p_i + t − d̂_i)²`, then
`L = mean_i |s·p_i + t − d̂_i|  +  α · Σ_scales mean |∇(s·p + t − d̂)|` (gradient matching over 4
scales, α = 0.5), so the network is free in scale and shift and is pushed to get depth
*order and edges* right — what a relative-depth backend needs. A third term,
`β · mean_i |minmax(p)_i − d̂_i|` (β = 1), asks the same of the prediction normalised the way
the depth stage stores it: per-image min–max, which least squares ignores. Without it (first
run) the SSI error kept falling while the min–max error rose from 0.05 to 0.08: the extremes
of the prediction (nearest point, sky) drifted, and with them every stored value.

Training crops (96 px, random position, flips) come from the 128-px scenes; the network is
fully convolutional with a global context vector, and runs at the 128-px scale at inference
(`EmbeddedDepthModel`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..embedded import DEPTH_CONFIG, EMBEDDED_MEAN, EMBEDDED_STD, build_embedded_depth_net
from . import augment
from .common import (
    PRETRAIN_DATA_SEED,
    RunDir,
    cosine,
    load_split,
    minmax_normalise,
    result_settings,
    run_training,
)

_MEAN = torch.tensor(EMBEDDED_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(EMBEDDED_STD).view(1, 3, 1, 1)


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


class DepthTrainer:
    def __init__(self, cfg: DepthPretrainConfig, images: torch.Tensor, depth: torch.Tensor):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.images = images  # (N,3,H,W) uint8
        self.target = minmax_normalise(depth)  # (N,H,W) float, sky = 1
        self.net = build_embedded_depth_net()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr,
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "step": self.step_idx, "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.step_idx = state["step"]

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
        x = augment.color_jitter(x, gen, p=0.8, brightness=0.2, contrast=0.2, saturation=0.2,
                                 hue=0.03)
        # re-normalise the crop's target so it is min–max normalised like the stored format
        return (x - _MEAN) / _STD, minmax_normalise(y)

    def step(self) -> dict[str, float]:
        cfg, s = self.cfg, self.step_idx
        lr = cosine(s, cfg.steps, cfg.lr, cfg.min_lr, warmup=int(cfg.warmup_frac * cfg.steps))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.net.train()
        x, y = self._batch()
        pred = self.net(x)[:, 0]
        loss, l1 = ssi_loss(pred, y, cfg.grad_weight, cfg.grad_scales)
        mm = (minmax_normalise(pred) - y).abs().mean()
        loss = loss + cfg.minmax_weight * mm
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()
        self.step_idx += 1
        return {"loss": loss.item(), "ssi_l1": l1.item(), "minmax_mae": mm.item(), "lr": lr,
                "grad_norm": float(gn)}


def train_depth(out: str, cfg: DepthPretrainConfig, data_dir: str, resume: bool = False) -> dict:
    """Run (or resume) depth-network training in `out`; returns the run summary."""

    settings = {"kind": "depth", "architecture": DEPTH_CONFIG, **result_settings(cfg)}
    run = RunDir(out, "depth", settings, resume)
    data = load_split(data_dir, "train", depth=True, limit=cfg.n_train)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
    trainer = DepthTrainer(cfg, images, torch.from_numpy(data["depth"]))
    return run_training(run, trainer, cfg, data_dir, len(images), "pretrain depth")
