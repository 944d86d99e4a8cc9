"""Self-distillation pretraining of the embedded ViT (`--objective ibot`): DINO's CLS loss over
global and local crops, iBOT's masked-patch loss and a dense cross-view loss, with "ema" (DINO)
or "sinkhorn" (SwAV, DINOv2) teacher targets and collapse monitors in the log. Not shipped: why
is in `vit.py`'s docstring. `ViTPretrainer` also draws the views and runs the schedules that
the VICRegL trainer (`vicregl.py`) reuses."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ..embedded import VIT_CONFIG, build_embedded_vit
from . import augment
from .common import cosine
from .vit_config import ViTPretrainConfig

_MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
_STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


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


@torch.no_grad()
def sinkhorn_knopp(logits: torch.Tensor, temp: float, iters: int = 3) -> torch.Tensor:
    """Teacher targets (N, K): `exp(logits / temp)` made doubly stochastic over the batch —
    each sample's row sums to 1 and every prototype gets N/K of the mass (SwAV, DINOv2)."""
    q = torch.exp((logits - logits.max()) / temp).t()  # (K, N)
    q = q / q.sum()
    k, n = q.shape
    for _ in range(iters):
        q = q / q.sum(1, keepdim=True).clamp_min(1e-30) / k
        q = q / q.sum(0, keepdim=True).clamp_min(1e-30) / n
    return (q * n).t()


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def param_groups(model: nn.Module) -> list[dict]:
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
        self.opt = torch.optim.AdamW(param_groups(self.student), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step_idx = 0
        # DINO centring ("ema"): running means of the teacher's outputs
        self.centers = {"cls": torch.zeros(cfg.out_dim), "patch": torch.zeros(cfg.patch_out_dim)}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
                "centers": self.centers, "step": self.step_idx, "config": asdict(self.cfg)}

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.opt.load_state_dict(state["opt"])
        self.centers = state["centers"]
        self.gen.set_state(state["gen"])
        self.step_idx = state["step"]

    # ---------------------------------------------------------------- one step
    def _views(self) -> dict[str, torch.Tensor]:
        cfg, gen = self.cfg, self.gen
        idx = torch.randint(len(self.images), (cfg.batch,), generator=gen)
        imgs = self.images[idx].float() / 255.0
        local_idx = torch.arange(cfg.batch)
        photo = dict(jitter=cfg.jitter, grey_p=cfg.grey_p)
        g1, box1, flip1 = augment.dino_view(imgs, local_idx, cfg.global_size, cfg.global_scale,
                                            gen, 1.0, 0.0, return_geometry=True, **photo)
        g2, box2, flip2 = augment.dino_view(imgs, local_idx, cfg.global_size, cfg.global_scale,
                                            gen, 0.1, cfg.solarize_p, return_geometry=True,
                                            **photo)
        grid = cfg.global_size // VIT_CONFIG["patch_size"]
        loc = masks = None
        if cfg.objective == "ibot":  # local crops: only self-distillation uses them
            loc = augment.dino_view(imgs, local_idx.repeat(cfg.n_local), cfg.local_size,
                                    cfg.local_scale, gen, 0.5, 0.0, **photo)
        if cfg.objective == "ibot" or cfg.vicreg_mask:
            masks = augment.block_masks(2 * cfg.batch, grid, grid, gen, cfg.mask_prob,
                                        cfg.mask_ratio)
        # where each patch of view 1 lies in view 2 and vice versa (dense cross-view loss);
        # rows follow the student's order [view 1, view 2]
        xy12, in12 = augment.correspondence(box1, flip1, box2, flip2, grid)
        xy21, in21 = augment.correspondence(box2, flip2, box1, flip1, grid)
        norm = lambda x: (x - _MEAN) / _STD  # noqa: E731
        return {"glob": norm(torch.cat([g1, g2])), "loc": None if loc is None else norm(loc),
                "masks": masks,
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
        cfg, s = self.cfg, self.step_idx
        lr, wd = self._schedule()
        mom = cosine(s, cfg.steps, cfg.momentum[0], cfg.momentum[1])
        t_warm = max(1, int(cfg.teacher_temp_warmup_frac * cfg.steps))
        t_temp = cfg.teacher_temp[0] + (cfg.teacher_temp[1] - cfg.teacher_temp[0]) * min(
            1.0, s / t_warm)

        v = self._views()
        b, grid = cfg.batch, cfg.global_size // VIT_CONFIG["patch_size"]
        sel = v["masks"].flatten(1)  # (2B, L): masked patches (iBOT)
        inside = v["inside"]  # (2B, g, g): student patches seen by the other global view
        def sk(logits: torch.Tensor, which: str) -> torch.Tensor:
            if cfg.centering == "sinkhorn":
                return sinkhorn_knopp(logits, t_temp, cfg.sinkhorn_iters)
            return F.softmax((logits - self.centers[which]) / t_temp, dim=-1)

        with torch.no_grad():
            t_tok = self.teacher.tokens(v["glob"])
            t_cls = self.teacher.cls_head(t_tok[:, 0])  # (2B, K)
            t_patch = self.teacher.patch_head(t_tok[:, 1:])  # (2B, L, K)
            q_cls = sk(t_cls, "cls")
            q_mask = sk(t_patch[sel], "patch")  # (M, K)
            # teacher logits of the *other* view at each student patch's scene point
            t_map = t_patch.view(2 * b, grid, grid, -1).permute(0, 3, 1, 2)
            t_map = t_map.roll(b, dims=0)  # row i of view 1 now holds view 2 and vice versa
            t_other = F.grid_sample(t_map, v["xy"], mode="bilinear", align_corners=False,
                                    padding_mode="border")
            q_dense = sk(t_other.permute(0, 2, 3, 1)[inside], "patch")  # (D, K)

        s_tok = self.student.tokens(v["glob"], v["masks"])
        s_cls = torch.cat([self.student.cls_head(s_tok[:, 0]),
                           self.student.cls_head(self.student.tokens(v["loc"])[:, 0])])
        logp_v = F.log_softmax(s_cls / cfg.student_temp, dim=-1).view(2 + cfg.n_local, b, -1)
        q_u = q_cls.view(2, b, -1)
        loss_cls = torch.stack([-(q_u[u] * logp_v[w]).sum(-1).mean()
                                for u in range(2) for w in range(2 + cfg.n_local) if w != u]
                               ).mean()
        logp_patch = F.log_softmax(self.student.patch_head(s_tok[:, 1:]) / cfg.student_temp, -1)
        zero = s_tok.sum() * 0
        loss_patch = -(q_mask * logp_patch[sel]).sum(-1).mean() if sel.any() else zero
        logp_dense = logp_patch.view(2 * b, grid, grid, -1)[inside]
        loss_dense = -(q_dense * logp_dense).sum(-1).mean() if inside.any() else zero
        loss = loss_cls + cfg.patch_weight * loss_patch + cfg.dense_weight * loss_dense

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
            self.centers["cls"] = self.centers["cls"] * cm + t_cls.mean(0) * (1 - cm)
            self.centers["patch"] = self.centers["patch"] * cm + t_patch.flatten(0, 1).mean(0) * (
                1 - cm)
            p_cls = logp_v.exp().flatten(0, 1)
            p_patch = logp_patch.exp().flatten(0, 1)
            feats = F.normalize(t_tok[:, 0], dim=-1)
            pfeats = F.normalize(t_tok[:, 1:].flatten(0, 1), dim=-1)
            stats = {
                "loss": loss.item(), "loss_cls": loss_cls.item(), "loss_patch": loss_patch.item(),
                "loss_dense": loss_dense.item(), "lr": lr, "wd": wd, "momentum": mom,
                "teacher_temp": t_temp, "grad_norm": float(grad_norm),
                "dense_frac": inside.float().mean().item(),
                # collapse monitors (see module docstring)
                "H_student_cls": _entropy(p_cls).mean().item(),
                "H_mean_cls": _entropy(p_cls.mean(0)).item(),
                "H_student_patch": _entropy(p_patch).mean().item(),
                "H_mean_patch": _entropy(p_patch.mean(0)).item(),
                "H_target_cls": _entropy(q_cls).mean().item(),
                "H_target_patch": _entropy(q_dense).mean().item() if len(q_dense) else 0.0,
                "std_cls_feat": feats.std(0).mean().item() * math.sqrt(feats.shape[1]),
                "std_patch_feat": pfeats.std(0).mean().item() * math.sqrt(pfeats.shape[1]),
            }
        self.step_idx += 1
        return stats

