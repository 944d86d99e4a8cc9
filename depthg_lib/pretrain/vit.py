"""Self-supervised pretraining of the embedded ViT (labels never used), VICRegL-style: VICReg
pulls together the expanded CLS tokens of two gently jittered 64-px crops of a 128-px scene and
every pair of their patches that sees the same scene point (`augment.correspondence`). Colour
jitter is gentle as SynthScenes' classes differ mostly by colour; what else was tried:
docs/pretraining_history.md."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..embedded import VIT_CONFIG, build_embedded_vit
from . import augment
from .common import PRETRAIN_DATA_SEED, Trainer, cosine, normalise_rgb, run_training


@dataclass(frozen=True)
class ViTPretrainConfig:
    """Every setting of a ViT pretraining run; the defaults are the shipped run's."""

    steps: int = 1200
    batch: int = 32
    seed: int = 0
    global_size: int = 64
    # Crop area fractions of the 128-px scenes: objects appear at 0.6–1.4× their size in the
    # full scene, as the downstream pipeline sees them (1×–1.5×, crops upsampled).
    global_scale: tuple[float, float] = (0.16, 0.64)
    jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.1, 0.02)  # bright, contr, sat, hue
    grey_p: float = 0.05
    solarize_p: float = 0.0  # of the second view
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_frac: float = 0.1
    weight_decay: tuple[float, float] = (0.05, 0.05)
    clip_grad: float = 3.0
    expander_dim: int = 256
    inv_coeff: float = 25.0  # λ
    var_coeff: float = 25.0  # μ
    cov_coeff: float = 1.0  # ν
    global_weight: float = 0.5
    log_every: int = 10
    checkpoint_minutes: float = 3.0
    data_seed: int = PRETRAIN_DATA_SEED
    data_size: int = 128
    n_train: int = 5000


def _expander(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out))


def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """VICReg on matched rows of z1, z2 (N, E): invariance (MSE), variance (hinge on each
    dimension's std, target 1), covariance (squared off-diagonal covariances / E)."""
    inv = F.mse_loss(z1, z2)
    var = z1.new_zeros(())
    cov = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(0)
        var = var + F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean() / 2
        c = (z.t() @ z) / max(1, len(z) - 1)
        cov = cov + (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1] / 2
    return inv, var, cov


class VICRegLTrainer(Trainer):
    """`step()` runs one VICRegL step on two fresh views of a random batch."""

    key = "student"

    def __init__(self, cfg: ViTPretrainConfig, images: torch.Tensor):
        dim = VIT_CONFIG["embed_dim"]  # the ViT (`backbone`, the only part exported), expanders
        super().__init__(cfg, images, lambda: nn.ModuleDict({
            "backbone": build_embedded_vit(), "global_expander": _expander(dim, cfg.expander_dim),
            "local_expander": _expander(dim, cfg.expander_dim)}))
        # weight decay on matrices only (not biases, norms, position or CLS)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            skip = p.ndim < 2 or name.endswith(("pos_embed", "cls_token"))
            (no_decay if skip else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "wd": True},
                                      {"params": no_decay, "wd": False, "weight_decay": 0.0}],
                                     lr=cfg.lr)

    def _views(self) -> dict[str, torch.Tensor]:
        """Two global views of a batch, and where each patch of one lies in the other."""
        cfg, gen = self.cfg, self.gen
        idx = torch.randint(len(self.images), (cfg.batch,), generator=gen)
        imgs = self.images[idx].float() / 255.0
        rows = torch.arange(cfg.batch)
        crop = dict(size=cfg.global_size, scale=cfg.global_scale, gen=gen, jitter=cfg.jitter,
                    grey_p=cfg.grey_p)
        g1, box1, flip1 = augment.dino_view(imgs, rows, blur_p=1.0, solarize_p=0.0, **crop)
        g2, box2, flip2 = augment.dino_view(imgs, rows, blur_p=0.1, solarize_p=cfg.solarize_p,
                                            **crop)
        grid = cfg.global_size // VIT_CONFIG["patch_size"]
        # rows follow the model's order [view 1, view 2]
        xy12, in12 = augment.correspondence(box1, flip1, box2, flip2, grid)
        xy21, in21 = augment.correspondence(box2, flip2, box1, flip1, grid)
        return {"glob": normalise_rgb(torch.cat([g1, g2])),
                "xy": torch.cat([xy12, xy21]), "inside": torch.cat([in12, in21])}

    def _loss(self, inv: torch.Tensor, var: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        return cfg.inv_coeff * inv + cfg.var_coeff * var + cfg.cov_coeff * cov

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        lr = self.set_lr()
        wd = cosine(self.step_idx, cfg.steps, cfg.weight_decay[0], cfg.weight_decay[1])
        for g in self.opt.param_groups:
            if g["wd"]:
                g["weight_decay"] = wd
        v = self._views()
        b, grid = cfg.batch, cfg.global_size // VIT_CONFIG["patch_size"]
        model = self.model.train()
        tok = model["backbone"].forward_features(v["glob"])  # (2B, 1+L, D), normalised
        zg = model["global_expander"](tok[:, 0])
        inv_g, var_g, cov_g = vicreg_terms(zg[:b], zg[b:])
        zl = model["local_expander"](tok[:, 1:].flatten(0, 1))  # (2B*L, E)
        zmap = zl.view(2 * b, grid, grid, -1).permute(0, 3, 1, 2)
        # the other view's embedding at each patch's scene point (view 1 ↔ view 2 by the roll)
        other = F.grid_sample(zmap.roll(b, dims=0), v["xy"], mode="bilinear",
                              align_corners=False, padding_mode="border")
        inside = v["inside"]
        z1 = zmap.permute(0, 2, 3, 1)[inside]
        z2 = other.permute(0, 2, 3, 1)[inside]
        inv_l, var_l, cov_l = vicreg_terms(z1, z2)
        loss_g, loss_l = self._loss(inv_g, var_g, cov_g), self._loss(inv_l, var_l, cov_l)
        loss = cfg.global_weight * loss_g + loss_l
        grad_norm = self.update(loss, cfg.clip_grad)
        with torch.no_grad():
            feats = F.normalize(tok[:, 0], dim=-1)
            pfeats = F.normalize(tok[:, 1:].flatten(0, 1), dim=-1)
            return {
                "loss": loss.item(), "loss_global": loss_g.item(), "loss_local": loss_l.item(),
                "inv_local": inv_l.item(), "var_local": var_l.item(), "cov_local": cov_l.item(),
                "inv_global": inv_g.item(), "var_global": var_g.item(), "lr": lr, "wd": wd,
                "grad_norm": grad_norm, "dense_frac": inside.float().mean().item(),
                # collapse monitors: spread of the backbone's normalised features
                "std_cls_feat": feats.std(0).mean().item() * math.sqrt(feats.shape[1]),
                "std_patch_feat": pfeats.std(0).mean().item() * math.sqrt(pfeats.shape[1]),
            }


def train_vit(out: str, cfg: ViTPretrainConfig, data_dir: str, resume: bool = False) -> dict:
    """Run (or resume) ViT pretraining in `out`; returns the run summary."""
    return run_training(out, "vit", VIT_CONFIG, cfg, data_dir, resume,
                        lambda images, data: VICRegLTrainer(cfg, images))
