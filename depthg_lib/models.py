"""The model (docs/method.md §5): frozen ViT backbone, segmentation head, cluster and linear
probes. `load_backbone` is the one entry point to every backbone, weights from local files only."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from . import embedded
from .errors import DepthGError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# alias → timm name, and the original checkpoint's file name
_TIMM = {"dino_vits8": ("vit_small_patch8_224.dino", "dino_deitsmall8_pretrain.pth"),
         "dino_vitb8": ("vit_base_patch8_224.dino", "dino_vitbase8_pretrain.pth"),
         "dinov2_vits14": ("vit_small_patch14_dinov2.lvd142m", "dinov2_vits14_pretrain.pth"),
         "dinov2_vitb14": ("vit_base_patch14_dinov2.lvd142m", "dinov2_vitb14_pretrain.pth")}
TIMM_BACKBONES = dict(_TIMM.values())
ALIASES = {alias: name for alias, (name, _) in _TIMM.items()}
EMBEDDED = ("embedded", "embedded-random")
BACKBONES = tuple(TIMM_BACKBONES) + EMBEDDED


def canonical_backbone_name(name: str) -> str:
    """The timm name of an alias (``dino_vits8``…); unknown names are an error."""
    name = ALIASES.get(name, name)
    if name not in BACKBONES:
        raise DepthGError(f"unknown backbone {name!r}; choose one of {list(BACKBONES)} "
                          f"(or an alias: {list(ALIASES)})")
    return name


def backbone_weights_dir() -> Path:
    """Where default backbone weights are: ``$DEPTHG_BACKBONE_DIR`` or data/models/backbones."""
    env = os.environ.get("DEPTHG_BACKBONE_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data/models/backbones"


def default_weights_candidates(name: str) -> list[Path]:
    """Files tried, in order, for a timm backbone without a weights file."""
    root = backbone_weights_dir()
    return [root / f"{name}.safetensors", root / f"{name}.pth", root / TIMM_BACKBONES[name]]


class FrozenViT(nn.Module):
    """[0,1] or uint8 images (B,3,H,W) → last-layer patch tokens as a map (B, C, H/p, W/p),
    normalised inside, no gradient, always eval; subclasses give `patch_tokens`: (B, H/p·W/p, C)."""

    def __init__(self, name: str, dim: int, patch_size: int, mean, std):
        super().__init__()
        self.name, self.dim, self.patch_size = name, int(dim), int(patch_size)
        for key, value in (("mean", mean), ("std", std)):
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32).view(1, 3, 1, 1),
                                 persistent=False)

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        b, _, h, w = images.shape
        p = self.patch_size
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return self.patch_tokens(x).transpose(1, 2).reshape(b, self.dim, h // p, w // p)


class Backbone(FrozenViT):
    """A frozen timm ViT (or the embedded one)."""

    def __init__(self, vit: nn.Module, name: str, mean, std):
        super().__init__(name, vit.embed_dim, vit.patch_embed.patch_size[0], mean, std)
        self.vit = vit
        self.requires_grad_(False)
        self.eval()

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)[:, self.vit.num_prefix_tokens:]


def _strip_layout(sd: dict) -> dict:
    """DINO training checkpoints (teacher, module./backbone. prefixes, head) → timm key names."""
    sd = next((sd[k] for k in ("teacher", "model", "state_dict") if isinstance(sd.get(k), dict)),
              sd)
    tensors = {re.sub(r"^(backbone\.)+", "", re.sub(r"^(module\.)+", "", k)): v
               for k, v in sd.items() if isinstance(v, torch.Tensor)}
    return {k: v for k, v in tensors.items() if not k.startswith("head.")}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or ``.pth`` file (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise DepthGError(f"backbone weights {path} do not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a checkpoint at all
        raise DepthGError(f"cannot read backbone weights {path} ({type(err).__name__}: {err}); "
                          "replace the file") from None


def load_vit_weights(vit: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load a checkpoint into a timm ViT, checking every key and shape first."""
    # heavy: timm takes seconds to import; the embedded backbone does without it
    from timm.models.vision_transformer import checkpoint_filter_fn

    raw = _strip_layout(read_state_dict(path))
    expected = vit.state_dict()
    patch_key = "patch_embed.proj.weight"  # timm would silently resample another patch size
    if (patch_key in raw and patch_key in expected
            and raw[patch_key].shape[-2:] != expected[patch_key].shape[-2:]):
        raise _shape_error(path, name, [(patch_key, expected[patch_key].shape,
                                         raw[patch_key].shape)])
    try:
        sd = checkpoint_filter_fn(raw, vit)  # DINOv2 layout, pos_embed grid
    except Exception as err:
        raise DepthGError(f"backbone weights {path} do not fit {name} ({type(err).__name__}: "
                          f"{err})") from None
    wrong = [(k, expected[k].shape, sd[k].shape) for k in expected
             if k in sd and sd[k].shape != expected[k].shape]
    if wrong:
        raise _shape_error(path, name, wrong)
    if sd.keys() != expected.keys():
        raise DepthGError(
            f"backbone weights {path} do not match {name}: missing keys "
            f"{sorted(expected.keys() - sd.keys())[:5]}, unexpected keys "
            f"{sorted(sd.keys() - expected.keys())[:5]} — is it a checkpoint of another model?")
    # assign=True: a model built on the meta device (no random init) takes the tensors as-is
    vit.load_state_dict({k: v.float().contiguous() for k, v in sd.items()}, strict=True,
                        assign=True)


def _shape_error(path, name, wrong) -> DepthGError:
    listed = "; ".join(f"{k}: expected {tuple(e)}, found {tuple(f)}" for k, e, f in wrong[:4])
    more = f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""
    return DepthGError(f"backbone weights {path} have the wrong shapes for {name}: {listed}{more}"
                       " — the file is for another model size or patch size")


def build_timm_vit(name: str) -> nn.Module:
    """A timm backbone's architecture, random weights, any input size (no download)."""
    import timm  # heavy: seconds to import, only for the timm backbones

    return timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)


def _on_meta(build):  # no random init: the weights are loaded right after
    with torch.device("meta"):
        return build()


def weights_identity(name: str, weights: str | os.PathLike | None = None) -> str:
    """What identifies the weights `load_backbone(name, weights)` loads (new weights invalidate
    what old ones made): the embedded ViT's sha256, a file's path, size and mtime, "random"."""
    name = canonical_backbone_name(name)
    if name == "embedded-random" or weights == "random":
        return "random"
    if name in EMBEDDED and weights is None:
        return "sha256:" + str(embedded.read_manifest().get("vit", {}).get("sha256", ""))
    path = Path(weights) if weights is not None else _found_weights(name)
    if path is None:
        return ""
    if not path.is_file():
        return str(path)
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def profile_weights_identity(profile) -> str:
    return weights_identity(profile.backbone, profile.backbone_weights or None)


def _found_weights(name: str) -> Path | None:
    return next((p for p in default_weights_candidates(name) if p.is_file()), None)


def load_backbone(name: str, weights: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu") -> Backbone:
    """Frozen backbone ``name`` on ``device``; weights: a file in DINO or timm layout, None (the
    default location or shipped file) or ``"random"`` (fixed-seed, for benchmarks and tests)."""
    name = canonical_backbone_name(name)
    own = name in EMBEDDED
    build = embedded.build_embedded_vit if own else lambda: build_timm_vit(name)
    if name == "embedded-random" or weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # "random": the same weights every time
            vit = build()
    else:
        vit = _on_meta(build)
        if own and weights is None:  # the shipped weights
            vit.load_state_dict(embedded.load_embedded_state_dict("vit"), strict=True, assign=True)
            weights = embedded.weights_path("vit")
        else:
            weights = _found_weights(name) if weights is None else weights
            if weights is None:
                candidates = default_weights_candidates(name)
                raise DepthGError(
                    f"no weights for backbone {name}: looked for "
                    f"{', '.join(map(str, candidates))}. Put the original checkpoint "
                    f"({TIMM_BACKBONES[name]}, from the DINO/DINOv2 repository) or timm's "
                    f"model.safetensors for {name} at {candidates[0]}, or set "
                    "`backbone_weights: /path/to/file` in the profile")
            load_vit_weights(vit, weights, name)
        left = [k for k, t in [*vit.named_parameters(), *vit.named_buffers()] if t.is_meta]
        if left:
            raise DepthGError(f"backbone weights {weights} left {left[:5]} unset")
    mean, std = ((embedded.EMBEDDED_MEAN, embedded.EMBEDDED_STD) if own
                 else (IMAGENET_MEAN, IMAGENET_STD))
    return Backbone(vit, name, mean, std).to(device)


# --------------------------------------------------------------------------- head, probes

class SegmentationHead(nn.Module):
    """STEGO head: ``code = linear(drop(f)) + nonlinear(drop(f))`` (1×1 convs, conv→ReLU→conv),
    each branch with its own Dropout2d(0.1) mask as released."""

    def __init__(self, in_dim: int, code_dim: int, dropout: bool = True, nonlinear: bool = True):
        super().__init__()
        self.dropout = nn.Dropout2d(0.1) if dropout else nn.Identity()
        self.linear = nn.Conv2d(in_dim, code_dim, 1)
        self.nonlinear = (nn.Sequential(nn.Conv2d(in_dim, in_dim, 1), nn.ReLU(),
                                        nn.Conv2d(in_dim, code_dim, 1)) if nonlinear else None)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        code = self.linear(self.dropout(feats))
        if self.nonlinear is not None:
            code = code + self.nonlinear(self.dropout(feats))
        return code


class ClusterProbe(nn.Module):
    """K learnable centroids scored by cosine similarity (released ``ClusterLookup``): one-hot
    (alpha None) or softmax(alpha·sim) with loss −mean Σ probs·sim, or log-softmax (§9)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.clusters = nn.Parameter(torch.randn(n_classes, dim))

    def forward(self, x: torch.Tensor, alpha: float | None = None, log_probs: bool = False):
        inner = torch.einsum("bchw,nc->bnhw", F.normalize(x, dim=1),
                             F.normalize(self.clusters, dim=1))
        if log_probs:  # evaluation (alpha 2)
            return F.log_softmax(inner * alpha, dim=1)
        if alpha is None:
            probs = F.one_hot(inner.argmax(dim=1), inner.shape[1]).permute(0, 3, 1, 2).to(inner)
        else:
            probs = F.softmax(inner * alpha, dim=1)
        loss = -(probs * inner).sum(1).mean()
        return loss, probs


class LinearProbe(nn.Module):
    """1×1 convolution on the code; `loss` trains it on labels without touching the head."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.conv = nn.Conv2d(dim, n_classes, 1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.conv(code)

    def loss(self, code: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the *detached* code's logits upsampled to the labels; labels outside
        0..n_classes−1 are ignored."""
        logits = F.interpolate(self(code.detach()), size=labels.shape[-2:], mode="bilinear",
                               align_corners=False)
        labels = labels.long()
        valid = (labels >= 0) & (labels < self.n_classes)
        # mean over valid pixels; 0 (not NaN) when a batch has none, without a device sync
        total = F.cross_entropy(logits, torch.where(valid, labels, -100), reduction="sum")
        return total / valid.sum().clamp_min(1)


class DepthGModel(nn.Module):
    """Head and both probes in one module (one DDP wrapper for all three); `forward` gives the
    codes of image and positive and the probe losses on the detached code (they never train it)."""

    def __init__(self, backbone_dim: int, code_dim: int, n_classes: int, extra_clusters: int = 0,
                 dropout: bool = True, nonlinear: bool = True):
        super().__init__()
        self.head = SegmentationHead(backbone_dim, code_dim, dropout=dropout, nonlinear=nonlinear)
        self.cluster_probe = ClusterProbe(code_dim, n_classes + extra_clusters)
        self.linear_probe = LinearProbe(code_dim, n_classes)

    def forward(self, feats: torch.Tensor, feats_pos: torch.Tensor, label: torch.Tensor):
        code, code_pos = self.head(torch.cat([feats, feats_pos])).chunk(2)
        linear_loss = self.linear_probe.loss(code, label)  # detaches the code itself
        cluster_loss, _ = self.cluster_probe(code.detach(), None)
        return code, code_pos, linear_loss, cluster_loss


@dataclass
class TrainedModel:
    """A trained head with its probes (eval mode) and what it was trained with (`meta`): what
    `checkpoint.load_checkpoint` gives, also for a released file (then with its own backbone)."""

    head: nn.Module
    cluster_probe: nn.Module
    linear_probe: nn.Module
    backbone_name: str
    meta: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _backbone: nn.Module | None = None

    def backbone(self) -> nn.Module:
        """The frozen backbone the head was trained on (loaded on first use)."""
        if self._backbone is None:
            weights = self.meta["profile"].get("backbone_weights") or None
            self._backbone = load_backbone(self.backbone_name, weights=weights, device=self.device)
        return self._backbone

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """Codes (B, code_dim, H/p, W/p) of images (B,3,H,W): uint8 0..255 or float [0,1]."""
        x = images.to(self.device)  # the backbone scales uint8 itself
        return self.head(self.backbone()(x if x.dtype == torch.uint8 else x.float())).float()
