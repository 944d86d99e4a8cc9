"""Settings of a ViT pretraining run (`ViTPretrainConfig`) and the `--objective` presets of
`python -m depthg_lib.pretrain vit`; how the presets were chosen is in `vit.py`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass

from .common import PRETRAIN_DATA_SEED


@dataclass(frozen=True)
class ViTPretrainConfig:
    """Every setting of a ViT pretraining run (recorded in the run folder and the manifest)."""

    objective: str = "vicregl"  # "vicregl" (shipped, preset vicregl-colour) or "ibot"
    steps: int = 800
    batch: int = 32
    seed: int = 0
    global_size: int = 64
    local_size: int = 32
    n_local: int = 2
    # Crop area fractions of the 128-px scenes, chosen so objects appear at 0.6–1.4× their
    # size in the full scene: the downstream pipeline looks at 1×–1.5× (crops upsampled).
    global_scale: tuple[float, float] = (0.16, 0.64)
    # Photometric augmentation of the views: colour jitter (brightness, contrast, saturation,
    # hue), grey probability, solarize probability of the second global view.
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grey_p: float = 0.2
    solarize_p: float = 0.2
    local_scale: tuple[float, float] = (0.03, 0.16)
    out_dim: int = 512
    patch_out_dim: int = 256
    head_hidden: int = 256
    lr: float = 5e-4
    min_lr: float = 1e-5
    warmup_frac: float = 0.1
    weight_decay: tuple[float, float] = (0.05, 0.05)
    momentum: tuple[float, float] = (0.98, 1.0)
    student_temp: float = 0.1
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    teacher_temp_warmup_frac: float = 0.3
    centering: str = "sinkhorn"  # teacher targets: "sinkhorn" (SwAV/DINOv2) or "ema" (DINO)
    sinkhorn_iters: int = 3
    center_momentum: float = 0.9
    mask_prob: float = 0.75  # iBOT uses 0.5; more masked patches = more patch signal per step
    mask_ratio: tuple[float, float] = (0.1, 0.5)
    patch_weight: float = 1.0
    dense_weight: float = 1.0
    clip_grad: float = 3.0
    # VICRegL (objective "vicregl")
    expander_dim: int = 256
    inv_coeff: float = 25.0
    var_coeff: float = 25.0
    cov_coeff: float = 1.0
    global_weight: float = 0.5
    # VICRegL's feature-based matching: each patch also pairs with its nearest patch (in
    # embedding space) of the other view of the same image; the k closest pairs per image
    # get the invariance term. 0 = location-based matching only.
    feature_match_k: int = 0
    # Mask blocks of patches (mask_prob, mask_ratio) in both views: a masked patch's embedding
    # must match the other view's embedding of the same scene point from context alone.
    vicreg_mask: bool = False
    freeze_last_layer_frac: float = 0.05
    log_every: int = 10
    checkpoint_minutes: float = 3.0
    # data
    data_seed: int = PRETRAIN_DATA_SEED
    data_size: int = 128
    n_train: int = 5000
    # multi-view dense objective and supervised reference (issue 12; depthg_lib/pretrain/dense.py)
    loss: str = "nce"  # "nce" (dense InfoNCE) or "dino" (dense self-distillation)
    pool: str = ""  # view-pair pool folder (`python -m depthg_lib.pretrain pairs`)
    input_size: int = 128
    crop_scale: tuple[float, float] = (0.35, 1.0)
    colour_jitter: float = 0.2
    proj_dim: int = 128
    bottleneck: int = 128
    n_prototypes: int = 1024
    nce_temp: float = 0.2
    max_matches: int = 4096
    vit_dim: int = 128
    vit_depth: int = 6
    vit_heads: int = 4
    n_classes: int = 12  # supervised reference only
    device: str = "cpu"
    bf16: bool = False


# Gentler photometric augmentation: keep the colour cues that tell ground materials apart
# (little hue/saturation jitter, rare grey, no solarize).
_GENTLE_COLOUR = dict(jitter=(0.3, 0.3, 0.1, 0.02), grey_p=0.05, solarize_p=0.0)

# `--objective` presets: everything that differs from the defaults. The CLI's default preset,
# `vicregl-colour`, is the shipped run; `vicregl` (the dataclass defaults) the first one.
OBJECTIVE_PRESETS: dict[str, dict] = {
    "vicregl": {},
    # + VICRegL's feature-based matching (nearest patches in embedding space)
    "vicregl-nn": dict(feature_match_k=20),
    # + masked patches: match the other view from context alone
    "vicregl-mask": dict(vicreg_mask=True),
    "vicregl-mask-strong": dict(vicreg_mask=True, mask_prob=1.0, mask_ratio=(0.2, 0.6),
                                steps=1000),
    # + gentle colour, longer schedule (shipped)
    "vicregl-colour": dict(_GENTLE_COLOUR, steps=1200),
    # the same with 80-px global views: more context per view, objects at the pipeline's scale
    "vicregl-colour-80": dict(_GENTLE_COLOUR, global_size=80, steps=1000),
    # issue 12: two renders of one layout, dense matches from depth, EMA teacher (dense.py)
    "multiview": dict(objective="multiview", loss="nce", steps=3000, batch=16, lr=5e-4,
                      momentum=(0.99, 1.0), weight_decay=(0.04, 0.1), global_weight=0.5),
    "multiview-dino": dict(objective="multiview", loss="dino", steps=3000, batch=16, lr=5e-4,
                           momentum=(0.99, 1.0), weight_decay=(0.04, 0.1), global_weight=0.5,
                           teacher_temp=(0.04, 0.06), student_temp=0.1, center_momentum=0.9),
    # REFERENCE ONLY, never shipped: the same ViT trained WITH patch labels (the ceiling)
    "supervised": dict(objective="supervised", steps=3000, batch=16, lr=5e-4,
                       weight_decay=(0.04, 0.04)),
    # DINO + iBOT + dense cross-view self-distillation with DINO's EMA centring
    "ibot": dict(objective="ibot", centering="ema", steps=600, teacher_temp=(0.04, 0.04),
                 momentum=(0.99, 1.0), mask_prob=0.5, weight_decay=(0.04, 0.2)),
}

