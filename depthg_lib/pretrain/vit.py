"""Self-supervised pretraining of the embedded ViT (labels never used): the shipped recipe.

VICRegL-style dense VICReg. Two global views (64-px crops of a 128-px scene: random box, flip,
gentle colour jitter, rare grey, blur) go through the ViT; an expander MLP maps the CLS token
and every patch token to E = 256 dimensions. For matched pairs of embeddings (z, z') the
VICReg loss is

    L(z, z') = λ · mean ||z − z'||²                         (invariance, λ = 25)
             + μ · mean_d max(0, 1 − std(z_d))  [both sides] (variance, μ = 25)
             + ν · Σ_{d≠e} cov(z)_{de}² / E     [both sides] (covariance, ν = 1)

applied to the CLS tokens of the two views (global term, weight 0.5) and to every pair of
patches that see the same scene point in the two views (local term, weight 1). The crop boxes
and flips are known, so that correspondence is exact (`augment.correspondence`); the partner
embedding is read bilinearly from the other view's patch grid. The variance and covariance
terms over the thousands of patches in a batch keep the representation from collapsing
without negatives, a teacher or prototypes.

The colour augmentation is gentle on purpose (hue ±0.02, saturation ±0.1, grey 5 %, no
solarize): on SynthScenes grass, sand, road and water differ mostly by colour, and
ImageNet-strength jitter taught the ViT to ignore it. What else was tried (DINO/iBOT
self-distillation, strong colour jitter, multi-view pairs, a supervised ceiling), with its
numbers and the commit that still has the code: docs/pretraining_history.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..embedded import EMBEDDED_MEAN, EMBEDDED_STD, VIT_CONFIG, build_embedded_vit
from . import augment
from .common import (
    PRETRAIN_DATA_SEED,
    RunDir,
    cosine,
    load_split,
    result_settings,
    run_training,
)

_MEAN = torch.tensor(EMBEDDED_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(EMBEDDED_STD).view(1, 3, 1, 1)


@dataclass(frozen=True)
class ViTPretrainConfig:
    """Every setting of a ViT pretraining run (recorded in the run folder and the manifest);
    the defaults are the shipped run's."""

    steps: int = 1200
    batch: int = 32
    seed: int = 0
    global_size: int = 64
    # Crop area fractions of the 128-px scenes, chosen so objects appear at 0.6–1.4× their
    # size in the full scene: the downstream pipeline looks at 1×–1.5× (crops upsampled).
    global_scale: tuple[float, float] = (0.16, 0.64)
    # Photometric augmentation of the views: colour jitter (brightness, contrast, saturation,
    # hue), grey probability, solarize probability of the second view.
    jitter: tuple[float, float, float, float] = (0.3, 0.3, 0.1, 0.02)
    grey_p: float = 0.05
    solarize_p: float = 0.0
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
    # data
    data_seed: int = PRETRAIN_DATA_SEED
    data_size: int = 128
    n_train: int = 5000


def _expander(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out))


class VICRegLModel(nn.Module):
    """Backbone (the exported embedded ViT) + a global and a local (per-patch) expander; only
    the backbone is exported."""

    def __init__(self, cfg: ViTPretrainConfig):
        super().__init__()
        self.backbone = build_embedded_vit()
        dim = self.backbone.embed_dim
        self.global_expander = _expander(dim, cfg.expander_dim)
        self.local_expander = _expander(dim, cfg.expander_dim)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens (B, 1+L, D) of the last block, normalised (timm's forward_features)."""
        return self.backbone.forward_features(x)


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


def param_groups(model: nn.Module) -> list[dict]:
    """AdamW groups: weight decay on matrices only (not biases, norms, position or CLS)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "wd": True}, {"params": no_decay, "wd": False,
                                            "weight_decay": 0.0}]


class VICRegLTrainer:
    """Model, optimiser and the generator that draws every view; `step()` runs one step.
    Resumes exactly: `state_dict` holds the generator state."""

    def __init__(self, cfg: ViTPretrainConfig, images: torch.Tensor):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.images = images  # (N,3,H,W) uint8
        self.student = VICRegLModel(cfg)
        self.opt = torch.optim.AdamW(param_groups(self.student), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0

    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), "step": self.step_idx, "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.step_idx = state["step"]

    def _views(self) -> dict[str, torch.Tensor]:
        """Two global views of a batch, and where each patch of one lies in the other."""
        cfg, gen = self.cfg, self.gen
        idx = torch.randint(len(self.images), (cfg.batch,), generator=gen)
        imgs = self.images[idx].float() / 255.0
        rows = torch.arange(cfg.batch)
        photo = dict(jitter=cfg.jitter, grey_p=cfg.grey_p, return_geometry=True)
        g1, box1, flip1 = augment.dino_view(imgs, rows, cfg.global_size, cfg.global_scale,
                                            gen, 1.0, 0.0, **photo)
        g2, box2, flip2 = augment.dino_view(imgs, rows, cfg.global_size, cfg.global_scale,
                                            gen, 0.1, cfg.solarize_p, **photo)
        grid = cfg.global_size // VIT_CONFIG["patch_size"]
        # rows follow the model's order [view 1, view 2]
        xy12, in12 = augment.correspondence(box1, flip1, box2, flip2, grid)
        xy21, in21 = augment.correspondence(box2, flip2, box1, flip1, grid)
        return {"glob": (torch.cat([g1, g2]) - _MEAN) / _STD,
                "xy": torch.cat([xy12, xy21]), "inside": torch.cat([in12, in21])}

    def _schedule(self) -> tuple[float, float]:
        """Set this step's cosine learning rate (after warm-up) and weight decay; return both."""
        cfg, s = self.cfg, self.step_idx
        lr = cosine(s, cfg.steps, cfg.lr, cfg.min_lr, warmup=int(cfg.warmup_frac * cfg.steps))
        wd = cosine(s, cfg.steps, cfg.weight_decay[0], cfg.weight_decay[1])
        for g in self.opt.param_groups:
            g["lr"] = lr
            if g["wd"]:
                g["weight_decay"] = wd
        return lr, wd

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        lr, wd = self._schedule()
        v = self._views()
        b, grid = cfg.batch, cfg.global_size // VIT_CONFIG["patch_size"]
        model = self.student.train()
        tok = model.tokens(v["glob"])  # (2B, 1+L, D)
        zg = model.global_expander(tok[:, 0])
        inv_g, var_g, cov_g = vicreg_terms(zg[:b], zg[b:])
        zl = model.local_expander(tok[:, 1:].flatten(0, 1))  # (2B*L, E)
        zmap = zl.view(2 * b, grid, grid, -1).permute(0, 3, 1, 2)
        # the other view's embedding at each patch's scene point (view 1 ↔ view 2 by the roll)
        other = F.grid_sample(zmap.roll(b, dims=0), v["xy"], mode="bilinear",
                              align_corners=False, padding_mode="border")
        inside = v["inside"]
        z1 = zmap.permute(0, 2, 3, 1)[inside]
        z2 = other.permute(0, 2, 3, 1)[inside]
        inv_l, var_l, cov_l = vicreg_terms(z1, z2)

        def total(inv, var, cov):
            return cfg.inv_coeff * inv + cfg.var_coeff * var + cfg.cov_coeff * cov

        loss_g, loss_l = total(inv_g, var_g, cov_g), total(inv_l, var_l, cov_l)
        loss = cfg.global_weight * loss_g + loss_l
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        self.opt.step()
        with torch.no_grad():
            feats = F.normalize(tok[:, 0], dim=-1)
            pfeats = F.normalize(tok[:, 1:].flatten(0, 1), dim=-1)
            stats = {
                "loss": loss.item(), "loss_global": loss_g.item(), "loss_local": loss_l.item(),
                "inv_local": inv_l.item(), "var_local": var_l.item(), "cov_local": cov_l.item(),
                "inv_global": inv_g.item(), "var_global": var_g.item(), "lr": lr, "wd": wd,
                "grad_norm": float(grad_norm), "dense_frac": inside.float().mean().item(),
                # collapse monitors: spread of the backbone's normalised features
                "std_cls_feat": feats.std(0).mean().item() * math.sqrt(feats.shape[1]),
                "std_patch_feat": pfeats.std(0).mean().item() * math.sqrt(pfeats.shape[1]),
            }
        self.step_idx += 1
        return stats


def make_trainer(cfg: ViTPretrainConfig, images: torch.Tensor) -> VICRegLTrainer:
    return VICRegLTrainer(cfg, images)


def train_vit(out: str, cfg: ViTPretrainConfig, data_dir: str, resume: bool = False) -> dict:
    """Run (or resume) ViT pretraining in `out`; returns the run summary."""
    settings = {"kind": "vit", "architecture": VIT_CONFIG, **result_settings(cfg)}
    run = RunDir(out, "vit", settings, resume)
    data = load_split(data_dir, "train", limit=cfg.n_train)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
    return run_training(run, make_trainer(cfg, images), cfg, data_dir, len(images),
                        "pretrain vit")
