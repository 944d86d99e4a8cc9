"""The two small models the course ships (`python -m depthg_lib.pretrain` trains them): a ViT
loaded like the DINO backbones (docs/method.md §5) and a U-Net, the `synth` depth backend (§2);
`weights/manifest.json` records each file's sha256 and the command that made it."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .errors import DepthGError
from .io import sha256_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"

WEIGHT_FILES = {"vit": "embedded_vit.safetensors", "depth": "embedded_depth.safetensors"}

# Normalisation of [0,1] RGB for both models: ImageNet's, like the DINO backbones'.
EMBEDDED_MEAN = (0.485, 0.456, 0.406)
EMBEDDED_STD = (0.229, 0.224, 0.225)

# 1.2M parameters, pretrained in ~90 min of one CPU core at `img_size` (others interpolated).
VIT_CONFIG = dict(img_size=64, patch_size=8, embed_dim=128, depth=6, num_heads=4, mlp_ratio=4.0,
                  qkv_bias=True, num_classes=0, global_pool="token", dynamic_img_size=True)
# The depth network: stem width, channels per U-Net level after the stride-2 stem.
DEPTH_CONFIG = dict(stem=16, channels=(24, 48, 96, 128))


def build_embedded_vit() -> nn.Module:
    # heavy: timm takes seconds to import, and most callers never build a ViT
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(**VIT_CONFIG)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EmbeddedDepthNet(nn.Module):
    """A light U-Net, (B,3,H,W) → (B,1,H,W), H, W multiples of `stride`: a half-resolution decoder
    (depth is smooth) and a pooled context vector (horizon and sky are whole-image cues)."""

    def __init__(self, channels: tuple[int, ...], stem: int):
        super().__init__()
        self.stride = 2 ** len(channels)
        self.stem = _conv_bn_relu(3, stem, stride=2)
        self.down = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(cin, c), _conv_bn_relu(c, c))
            for cin, c in zip((stem, *channels[:-1]), channels))
        self.context = nn.Sequential(nn.Linear(channels[-1], channels[-1]), nn.ReLU(inplace=True))
        self.lateral = nn.ModuleList(nn.Conv2d(c_low, c, 1)
                                     for c, c_low in zip(channels[:-1], channels[1:]))
        self.up = nn.ModuleList(_conv_bn_relu(c, c) for c in channels[:-1])
        self.out = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        x = x + self.context(x.mean(dim=(2, 3)))[:, :, None, None]
        for i in reversed(range(len(self.up))):
            x = F.interpolate(self.lateral[i](x), size=skips[i].shape[-2:], mode="bilinear",
                              align_corners=False)
            x = self.up[i](x + skips[i])
        return F.interpolate(self.out(x), size=size, mode="bilinear", align_corners=False)


def build_embedded_depth_net() -> nn.Module:
    return EmbeddedDepthNet(**DEPTH_CONFIG)


def weights_path(kind: str) -> Path:
    return WEIGHTS_DIR / WEIGHT_FILES[kind]


def manifest_path() -> Path:
    return WEIGHTS_DIR / MANIFEST_NAME


def read_manifest() -> dict:
    """The weights manifest ({} when none has been written yet)."""
    path = manifest_path()
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError as err:
        raise DepthGError(f"{path} is not valid JSON ({err}); restore it with "
                          f"`git checkout -- {path}`") from None


def embedded_weights_available(kind: str) -> bool:
    """True when the weight file exists and the manifest lists it (checksum not verified)."""
    return weights_path(kind).exists() and kind in read_manifest()


def load_embedded_state_dict(kind: str) -> dict[str, torch.Tensor]:
    """Read `weights/<file>.safetensors` as float32 after checking its sha256 in the manifest."""
    path = weights_path(kind)
    entry = read_manifest().get(kind)
    command = (entry or {}).get("command") or (
        f"python -m depthg_lib.pretrain {kind} --out runs/pretrain/{kind} --resume && "
        f"python -m depthg_lib.pretrain export {kind} --out runs/pretrain/{kind}")
    if not path.exists() or entry is None:
        what = "does not exist" if not path.exists() else f"are not listed in {manifest_path()}"
        raise DepthGError(f"embedded {kind} weights {path} {what}; re-create them with `{command}`"
                          f" (or restore the shipped file with `git checkout -- {path}`)")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise DepthGError(
            f"embedded {kind} weights {path} have sha256 {digest[:16]}…, but {manifest_path()} "
            f"expects {entry['sha256'][:16]}…: the file is corrupt or from another run; restore "
            f"it with `git checkout -- {path}` or re-create it with `{command}`")
    return {k: v.float() if v.is_floating_point() else v
            for k, v in load_file(str(path)).items()}


def load_embedded_vit(pretrained: bool = True) -> nn.Module:
    """The embedded ViT in eval mode, with the shipped weights unless `pretrained=False`."""
    vit = build_embedded_vit()
    if pretrained:
        vit.load_state_dict(load_embedded_state_dict("vit"), strict=True)
    return vit.eval()


class EmbeddedDepthModel(nn.Module):
    """The `synth` depth backend, run with the shorter side at `work_size` and resized back (the
    horizon cue does not survive a change of scale); `embedded-random` unless `pretrained`."""

    def __init__(self, pretrained: bool = True, device: str | torch.device = "cpu",
                 work_size: int = 128):  # the depth network's training resolution
        super().__init__()
        self.net = build_embedded_depth_net().eval()
        self.model_id, self.weights_sha256 = "embedded-random", None
        if pretrained:
            self.net.load_state_dict(load_embedded_state_dict("depth"), strict=True)
            self.model_id, self.weights_sha256 = "embedded", read_manifest()["depth"]["sha256"]
        self.work_size = work_size
        self.register_buffer("mean", torch.tensor(EMBEDDED_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(EMBEDDED_STD).view(1, 3, 1, 1))
        self.to(device)

    @torch.no_grad()
    def estimate_depth(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B,3,H,W) in [0,1], got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        x = (images.to(self.mean.device, torch.float32) - self.mean) / self.std
        s, scale = self.net.stride, self.work_size / min(h, w)
        wh, ww = max(s, round(h * scale / s) * s), max(s, round(w * scale / s) * s)
        if (wh, ww) == (h, w):
            return self.net(x)[:, 0]
        x = F.interpolate(x, size=(wh, ww), mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(self.net(x), size=(h, w), mode="bilinear", align_corners=False)[:, 0]

    def settings(self) -> dict:
        """What `depth.json` records, so that maps of another model are never mixed in."""
        return {"backend": "synth", "model": self.model_id,
                "weights_sha256": self.weights_sha256, "resolution": self.work_size}
