"""VICRegL-style dense VICReg pretraining of the embedded ViT (`--objective vicregl*`, the
shipped objective): VICReg on the CLS tokens of two global views and on every pair of patches
that see the same scene point. The loss and the recipe are described in `vit.py`'s docstring."""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from ..embedded import VIT_CONFIG, build_embedded_vit
from .ibot import IBOTModel, ViTPretrainer, param_groups
from .vit_config import ViTPretrainConfig


def _expander(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out), nn.BatchNorm1d(out), nn.ReLU(inplace=True),
                         nn.Linear(out, out))


class VICRegLModel(nn.Module):
    """Backbone (the exported embedded ViT) + a global and a local (per-patch) expander
    (+ a mask token when `vicreg_mask`; only the backbone is exported)."""

    def __init__(self, cfg: ViTPretrainConfig):
        super().__init__()
        self.backbone = build_embedded_vit()
        dim = self.backbone.embed_dim
        self.global_expander = _expander(dim, cfg.expander_dim)
        self.local_expander = _expander(dim, cfg.expander_dim)
        if cfg.vicreg_mask:
            self.mask_token = nn.Parameter(torch.zeros(dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    tokens = IBOTModel.tokens


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


class VICRegLTrainer(ViTPretrainer):
    """VICRegL-style training: VICReg on the CLS tokens of two global views, and VICReg on
    every pair of patches that see the same scene point in the two views (exact
    correspondence from the crop boxes). No teacher, no prototypes: the variance term keeps
    every embedding dimension spread across the batch, so the representation cannot collapse."""

    def __init__(self, cfg: ViTPretrainConfig, images: torch.Tensor):
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.images = images
        self.student = VICRegLModel(cfg)
        self.teacher = None
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

    def step(self) -> dict[str, float]:
        cfg = self.cfg
        lr, wd = self._schedule()
        v = self._views()
        b, grid = cfg.batch, cfg.global_size // VIT_CONFIG["patch_size"]
        model = self.student.train()
        tok = model.tokens(v["glob"], v["masks"])  # (2B, 1+L, D)
        zg = model.global_expander(tok[:, 0])
        inv_g, var_g, cov_g = vicreg_terms(zg[:b], zg[b:])
        zl = model.local_expander(tok[:, 1:].flatten(0, 1))  # (2B*L, E)
        zmap = zl.view(2 * b, grid, grid, -1).permute(0, 3, 1, 2)
        other = F.grid_sample(zmap.roll(b, dims=0), v["xy"], mode="bilinear",
                              align_corners=False, padding_mode="border")
        inside = v["inside"]
        z1 = zmap.permute(0, 2, 3, 1)[inside]
        z2 = other.permute(0, 2, 3, 1)[inside]
        inv_l, var_l, cov_l = vicreg_terms(z1, z2)
        inv_nn = zl.new_zeros(())
        if cfg.feature_match_k:
            zi = zmap.flatten(2).transpose(1, 2)  # (2B, L, E)
            za, zb = zi[:b], zi[b:]
            for src, dst in ((za, zb), (zb, za)):
                d = torch.cdist(src, dst)  # (B, L, L)
                best, nn_idx = d.min(dim=2)
                keep = best.topk(min(cfg.feature_match_k, best.shape[1]), dim=1,
                                 largest=False).indices  # (B, k)
                s_sel = src.gather(1, keep[..., None].expand(-1, -1, src.shape[-1]))
                d_sel = dst.gather(1, nn_idx.gather(1, keep)[..., None].expand(
                    -1, -1, dst.shape[-1]))
                inv_nn = inv_nn + F.mse_loss(s_sel, d_sel) / 2
            inv_l = inv_l + inv_nn

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
                "inv_feature_nn": inv_nn.item(),
                "inv_global": inv_g.item(), "var_global": var_g.item(), "lr": lr, "wd": wd,
                "grad_norm": float(grad_norm), "dense_frac": inside.float().mean().item(),
                # collapse monitors: spread of the backbone's normalised features
                "std_cls_feat": feats.std(0).mean().item() * math.sqrt(feats.shape[1]),
                "std_patch_feat": pfeats.std(0).mean().item() * math.sqrt(pfeats.shape[1]),
            }
        self.step_idx += 1
        return stats

