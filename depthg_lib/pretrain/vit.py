"""Self-supervised pretraining of the embedded ViT: DINO + iBOT self-distillation.

Objective (iBOT = DINO's image-level loss plus a masked patch-level loss). A student and a
teacher share one architecture (ViT + two projection heads ending in K prototypes); the
teacher is an exponential moving average of the student and gets no gradient.

- CLS loss (DINO): for every pair of different views (u, v) of an image,
  `L_cls = − Σ_k P_t(u)_k · log P_s(v)_k`, with `P_t = softmax((g_t(u) − c) / τ_t)` (centred,
  sharpened teacher) and `P_s = softmax(g_s(v) / τ_s)`; views are 2 global crops (64 px) and
  a few local crops (32 px), the teacher sees only global crops.
- Patch loss (iBOT masked image modelling by self-distillation): the student's global views
  have random blocks of patches replaced by a learned mask token; for each masked patch i,
  `L_patch = − Σ_k P_t(u)_{i,k} · log P_s(û)_{i,k}`, the teacher seeing the unmasked view.

Why this objective on a CPU: the quality bar is about *patch* features (k-means of patch
tokens), and the iBOT patch loss trains every patch token directly to predict a semantic
code of its (hidden) content from its context — DINO alone shapes only the CLS token, MAE
learns pixel reconstruction whose features cluster poorly without fine-tuning, and
contrastive methods need large batches a CPU cannot afford. Both losses are cheap on 8×8
token grids and all views come from one forward per group.

Collapse is prevented by centring (c = EMA of the teacher's mean output) and sharpening
(τ_t < τ_s); the log records, per head, the teacher's mean per-sample entropy and the entropy
of its mean output (collapse to one prototype sends the latter to 0, collapse to uniform sends
the former to log K) and the spread of the teacher's normalised features across the batch.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..embedded import VIT_CONFIG, build_embedded_vit
from . import augment
from .common import (
    PRETRAIN_DATA_SEED,
    RunDir,
    Timer,
    cosine,
    data_record,
    load_split,
    machine_description,
    result_settings,
)

_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


@dataclass(frozen=True)
class ViTPretrainConfig:
    """Every setting of a ViT pretraining run (recorded in the run folder and the manifest)."""

    steps: int = 600
    batch: int = 32
    seed: int = 0
    global_size: int = 64
    local_size: int = 32
    n_local: int = 2
    # Crop area fractions of the 128-px scenes, chosen so objects appear at 0.6–1.4× their
    # size in the full scene: the downstream pipeline looks at 1×–1.5× (crops upsampled).
    global_scale: tuple[float, float] = (0.16, 0.64)
    local_scale: tuple[float, float] = (0.03, 0.16)
    out_dim: int = 1024
    patch_out_dim: int = 1024
    head_hidden: int = 256
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_frac: float = 0.1
    weight_decay: tuple[float, float] = (0.04, 0.2)
    momentum: tuple[float, float] = (0.99, 1.0)
    student_temp: float = 0.1
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    teacher_temp_warmup_frac: float = 0.3
    center_momentum: float = 0.9
    mask_prob: float = 0.75  # iBOT uses 0.5; more masked patches = more patch signal per step
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    patch_weight: float = 1.0
    clip_grad: float = 3.0
    freeze_last_layer_frac: float = 0.05
    log_every: int = 10
    checkpoint_minutes: float = 3.0
    # data
    data_seed: int = PRETRAIN_DATA_SEED
    data_size: int = 128
    n_train: int = 5000


class DINOHead(nn.Module):
    """MLP → unit-norm bottleneck → cosine similarity to K unit-norm prototypes."""

    def __init__(self, dim: int, out_dim: int, hidden: int = 512, bottleneck: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck))
        nn.init.trunc_normal_(self.prototypes, std=0.02)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(self.mlp(x), dim=-1), F.normalize(self.prototypes, dim=-1))


class IBOTModel(nn.Module):
    """Backbone (the exported embedded ViT) + CLS head + patch head + mask token."""

    def __init__(self, cfg: ViTPretrainConfig):
        super().__init__()
        self.backbone = build_embedded_vit()
        dim = self.backbone.embed_dim
        self.cls_head = DINOHead(dim, cfg.out_dim, cfg.head_hidden)
        self.patch_head = DINOHead(dim, cfg.patch_out_dim, cfg.head_hidden)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """timm's forward_features, with masked patches replaced by the mask token."""
        vit = self.backbone
        x = vit.patch_embed(x)  # (B, h, w, D) with dynamic_img_size
        if mask is not None:
            x = torch.where(mask[..., None], self.mask_token.to(x.dtype), x)
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(x)))
        return vit.norm(vit.blocks(x))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def _param_groups(model: nn.Module) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or name.endswith(("pos_embed", "cls_token", "mask_token"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "wd": True}, {"params": no_decay, "wd": False,
                                            "weight_decay": 0.0}]


class ViTPretrainer:
    """Holds student, teacher, optimiser and centres; `step()` runs one training step."""

    def __init__(self, cfg: ViTPretrainConfig, images: torch.Tensor):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.images = images  # (N,3,H,W) uint8
        self.student = IBOTModel(cfg)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.opt = torch.optim.AdamW(_param_groups(self.student), lr=cfg.lr)
        self.center_cls = torch.zeros(cfg.out_dim)
        self.center_patch = torch.zeros(cfg.patch_out_dim)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "opt": self.opt.state_dict(), "center_cls": self.center_cls,
                "center_patch": self.center_patch, "gen": self.gen.get_state(),
                "step": self.step_idx, "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.opt.load_state_dict(state["opt"])
        self.center_cls, self.center_patch = state["center_cls"], state["center_patch"]
        self.gen.set_state(state["gen"])
        self.step_idx = state["step"]

    # ---------------------------------------------------------------- one step
    def _views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg, gen = self.cfg, self.gen
        idx = torch.randint(len(self.images), (cfg.batch,), generator=gen)
        imgs = self.images[idx].float() / 255.0
        local_idx = torch.arange(cfg.batch)
        g1 = augment.dino_view(imgs, local_idx, cfg.global_size, cfg.global_scale, gen, 1.0, 0.0)
        g2 = augment.dino_view(imgs, local_idx, cfg.global_size, cfg.global_scale, gen, 0.1, 0.2)
        loc = augment.dino_view(imgs, local_idx.repeat(cfg.n_local), cfg.local_size,
                                cfg.local_scale, gen, 0.5, 0.0)
        grid = cfg.global_size // VIT_CONFIG["patch_size"]
        masks = augment.block_masks(2 * cfg.batch, grid, grid, gen, cfg.mask_prob,
                                    cfg.mask_ratio)
        norm = lambda x: (x - _MEAN) / _STD  # noqa: E731
        return norm(torch.cat([g1, g2])), norm(loc), masks

    def step(self) -> dict[str, float]:
        cfg, s = self.cfg, self.step_idx
        lr = cosine(s, cfg.steps, cfg.lr, cfg.min_lr, warmup=int(cfg.warmup_frac * cfg.steps))
        wd = cosine(s, cfg.steps, cfg.weight_decay[0], cfg.weight_decay[1])
        mom = cosine(s, cfg.steps, cfg.momentum[0], cfg.momentum[1])
        t_warm = max(1, int(cfg.teacher_temp_warmup_frac * cfg.steps))
        t_temp = cfg.teacher_temp[0] + (cfg.teacher_temp[1] - cfg.teacher_temp[0]) * min(
            1.0, s / t_warm)
        for g in self.opt.param_groups:
            g["lr"] = lr
            if g["wd"]:
                g["weight_decay"] = wd

        glob, loc, masks = self._views()
        b = cfg.batch
        sel = masks.flatten(1)  # (2B, L): the masked patches, the only ones the patch loss uses
        with torch.no_grad():
            t_tok = self.teacher.tokens(glob)
            t_cls = self.teacher.cls_head(t_tok[:, 0])
            t_patch = self.teacher.patch_head(t_tok[:, 1:][sel])  # (M, K)
            p_cls = F.softmax((t_cls - self.center_cls) / t_temp, dim=-1)
            p_patch = F.softmax((t_patch - self.center_patch) / t_temp, dim=-1)

        s_tok = self.student.tokens(glob, masks)
        s_cls = torch.cat([self.student.cls_head(s_tok[:, 0]),
                           self.student.cls_head(self.student.tokens(loc)[:, 0])])
        logp_cls = F.log_softmax(s_cls / cfg.student_temp, dim=-1)
        # DINO: teacher view u (global 0/1) against every student view v != u.
        n_views = 2 + cfg.n_local
        logp_v = logp_cls.view(n_views, b, -1)
        p_u = p_cls.view(2, b, -1)
        terms = [-(p_u[u] * logp_v[v]).sum(-1).mean()
                 for u in range(2) for v in range(n_views) if v != u]
        loss_cls = torch.stack(terms).mean()

        # iBOT: masked patches of each global view against the teacher on the unmasked view
        # (the heads run on the masked tokens only: the loss needs no others).
        if sel.any():
            logp_patch = F.log_softmax(
                self.student.patch_head(s_tok[:, 1:][sel]) / cfg.student_temp, dim=-1)
            loss_patch = -(p_patch * logp_patch).sum(-1).mean()
        else:
            loss_patch = s_tok.sum() * 0
        loss = loss_cls + cfg.patch_weight * loss_patch

        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if s < int(cfg.freeze_last_layer_frac * cfg.steps):
            for head in (self.student.cls_head, self.student.patch_head):
                head.prototypes.grad = None
        grad_norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.clip_grad)
        self.opt.step()

        with torch.no_grad():
            for ps, pt in zip(self.student.parameters(), self.teacher.parameters()):
                pt.mul_(mom).add_(ps.detach(), alpha=1 - mom)
            cm = cfg.center_momentum
            self.center_cls = self.center_cls * cm + t_cls.mean(0) * (1 - cm)
            if len(t_patch):
                self.center_patch = self.center_patch * cm + t_patch.mean(0) * (1 - cm)
            feats = F.normalize(t_tok[:, 0], dim=-1)
            pfeats = F.normalize(t_tok[:, 1:].flatten(0, 1), dim=-1)
            stats = {
                "loss": loss.item(), "loss_cls": loss_cls.item(), "loss_patch": loss_patch.item(),
                "lr": lr, "wd": wd, "momentum": mom, "teacher_temp": t_temp,
                "grad_norm": float(grad_norm),
                # collapse monitors (see module docstring); log K = 6.93 for K = 1024
                "H_teacher_cls": _entropy(p_cls).mean().item(),
                "H_mean_cls": _entropy(p_cls.mean(0)).item(),
                "H_teacher_patch": _entropy(p_patch).mean().item() if len(p_patch) else 0.0,
                "H_mean_patch": _entropy(p_patch.mean(0)).item() if len(p_patch) else 0.0,
                "std_cls_feat": feats.std(0).mean().item() * math.sqrt(feats.shape[1]),
                "std_patch_feat": pfeats.std(0).mean().item() * math.sqrt(pfeats.shape[1]),
            }
        self.step_idx += 1
        return stats


def train_vit(out: str, cfg: ViTPretrainConfig, data_dir: str, resume: bool = False) -> dict:
    """Run (or resume) ViT pretraining in `out`; returns the run summary."""
    from tqdm.auto import tqdm

    settings = {"kind": "vit", "architecture": VIT_CONFIG, **result_settings(cfg)}
    run = RunDir(out, "vit", settings, resume)
    data = load_split(data_dir, "train", limit=cfg.n_train)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).contiguous()
    trainer = ViTPretrainer(cfg, images)
    state = run.load()
    timer = Timer(every_s=cfg.checkpoint_minutes * 60)
    resumed_at = None
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        timer = Timer(state["elapsed_s"], every_s=cfg.checkpoint_minutes * 60)
        resumed_at = trainer.step_idx
    import sys

    bar = tqdm(total=cfg.steps, initial=trainer.step_idx, desc="pretrain vit",
               mininterval=1 if sys.stderr.isatty() else 60)

    renderer = data_record(data_dir).get("renderer_version")

    def save() -> None:
        run.save({"trainer": trainer.state_dict(), "elapsed_s": timer.elapsed,
                  "machine": machine_description(), "n_images": len(images),
                  "renderer_version": renderer})

    while trainer.step_idx < cfg.steps:
        stats = trainer.step()
        step = trainer.step_idx
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
            run.log({"step": step, "elapsed_s": round(timer.elapsed, 1), **stats},
                    resumed_at=resumed_at)
            resumed_at = None
            bar.set_postfix(loss=f"{stats['loss']:.3f}", Hc=f"{stats['H_mean_cls']:.2f}")
        if timer.due() or step == cfg.steps:
            save()
    bar.close()
    return {"steps": trainer.step_idx, "elapsed_s": timer.elapsed}
