"""Released STEGO / DepthG models: import their Lightning checkpoints, and the paper's numbers.

The released `.ckpt` files share one layout (docs/reproduction.md §6). `load_released` reads one
with torch's `weights_only` loader, every non-torch class the file names (omegaconf, Lightning)
allowed as an inert stand-in: neither package is needed and nothing in the file runs.
"""

from __future__ import annotations

import builtins
import collections
import functools
import math
import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .config import load_profile
from .errors import DepthGError
from .models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClusterProbe,
    FrozenViT,
    LinearProbe,
    SegmentationHead,
    TrainedModel,
)

DOCS = "docs/reproduction.md §6"
RELEASED_FORMAT = "released-lightning"
_TIMM_NAMES = {(384, 8): "vit_small_patch8_224.dino", (768, 8): "vit_base_patch8_224.dino"}
_REQUIRED = ("net.model.cls_token", "net.model.pos_embed", "net.model.patch_embed.proj.weight",
             "net.model.norm.weight", "net.cluster1.0.weight", "cluster_probe.clusters",
             "linear_probe.weight", "linear_probe.bias")


class Pickled:
    """Inert stand-in for a class a checkpoint names: keeps its arguments and pickled state."""

    pickled_name, args, state = "?", (), None

    def __init__(self, *args, **_kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_name}>"


@functools.cache  # one class per name, so that stand-ins of one class compare alike
def _stand_in(qual: str) -> type:
    return type(qual.rpartition(".")[2], (Pickled,), {"pickled_name": qual, "__module__": __name__})


_PLAIN = {f"builtins.{n}": getattr(builtins, n) for n in (
    "dict", "list", "tuple", "set", "frozenset", "int", "float", "bool", "complex", "str",
    "bytes", "bytearray", "slice", "range")} | {
    "collections.OrderedDict": collections.OrderedDict,
    "collections.defaultdict": collections.defaultdict}


def _allowed_globals(path: Path) -> list:
    """For torch's `weights_only` loader: every global the file names beyond torch's own,
    plain containers as themselves and anything else as an inert stand-in."""
    allowed = []
    for qual in torch.serialization.get_unsafe_globals_in_checkpoint(path):
        if qual.startswith("torch."):
            raise pickle.UnpicklingError(f"the file needs {qual}, which the safe loader does "
                                         "not rebuild")
        allowed.append((_PLAIN.get(qual) or _stand_in(qual), qual))
    return allowed


def plain(obj):
    """Pickled omegaconf containers and nodes → plain dicts, lists and values."""
    if isinstance(obj, Pickled):
        state = obj.state if isinstance(obj.state, dict) else {}
        if obj.pickled_name.startswith("omegaconf.") and ("_content" in state or "_val" in state):
            # a container's content, a node's value, None, "???" or an "${interpolation}"
            return plain(state.get("_content", state.get("_val")))
        return repr(obj)
    if isinstance(obj, dict):
        return {k if isinstance(k, (str, int, float, bool)) else repr(k): plain(v)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def _not_released(path, why: str) -> DepthGError:
    return DepthGError(
        f"{path} is not a released STEGO/DepthG checkpoint: {why}. Expected a Lightning .ckpt "
        "whose state_dict holds net.model.* (the DINO ViT), net.cluster1.* (the head), "
        "cluster_probe.clusters and linear_probe.* — fetch one with `python -m "
        f"depthg_lib.fetch --profile stego-cityscapes-vitb8 --only checkpoint` ({DOCS})")


def read_lightning_file(path: str | os.PathLike) -> dict:
    """The checkpoint's top-level dict, read safely (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DepthGError(f"released checkpoint {path} does not exist; fetch it with `python -m "
                          "depthg_lib.fetch --profile PROFILE --only checkpoint` or put the file "
                          f"there ({DOCS})")
    try:
        with torch.serialization.safe_globals(_allowed_globals(path)):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or refused by the unpickler
        raise _not_released(path, f"it cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        found = sorted(map(str, ckpt))[:6] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise _not_released(path, f"it has no Lightning state_dict (found {found})")
    return ckpt


def is_released(model) -> bool:
    """True for a model imported by `load_released` (it brings its own DINO backbone)."""
    return (getattr(model, "meta", None) or {}).get("format") == RELEASED_FORMAT


def is_released_checkpoint(path: str | os.PathLike) -> bool:
    """Cheap test (no tensor is read): does this look like a released Lightning checkpoint?"""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            record = next((n for n in zf.namelist() if n.endswith("/data.pkl")), None)
            data = zf.read(record) if record else b""
    except (OSError, zipfile.BadZipFile):
        return path.suffix == ".ckpt"
    return b"net.model.pos_embed" in data and b"cluster_probe.clusters" in data


def dino_interpolate_pos_embed(pos_embed: torch.Tensor, height: int, width: int,
                               patch: int) -> torch.Tensor:
    """DINO's position embedding for a height × width image (`interpolate_pos_encoding`): resized
    bicubically by the scale factor (rows + 0.1) / n, not to the exact size as timm does."""
    n = pos_embed.shape[1] - 1
    rows, cols = height // patch, width // patch
    if rows * cols == n and height == width:
        return pos_embed
    side, dim = int(math.sqrt(n)), pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
                         mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
    return torch.cat([pos_embed[:, :1], grid], dim=1)


class DinoViT(FrozenViT):
    """The frozen DINO ViT of a released checkpoint: [0,1] images (B,3,H,W) → last-layer
    patch tokens after the final LayerNorm, as a map (B, C, H/p, W/p) (`net(img)[0]`)."""

    def __init__(self, dim: int, depth: int, heads: int, patch: int, tokens: int,
                 mlp_hidden: int, name: str):
        super().__init__(name, dim, patch, IMAGENET_MEAN, IMAGENET_STD)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        # DINO's pre-norm blocks, same key names; timm is heavy to import, so only here
        from timm.models.vision_transformer import Block

        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_hidden / dim, qkv_bias=True,
                                          norm_layer=norm) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(b, -1, -1).to(x.dtype), x], dim=1)
        x = x + dino_interpolate_pos_embed(self.pos_embed, h, w, self.patch_size).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1:]


def _sub(sd: dict, prefix: str, into: str = "") -> dict:
    return {into + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _released_modules(sd: dict[str, torch.Tensor]):
    """DINO ViT, head, cluster and linear probe, sized by the tensors and loaded strictly."""
    d, c = sd["net.cluster1.0.weight"].shape[:2]
    patch = int(sd["net.model.patch_embed.proj.weight"].shape[-1])
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith("net.model.blocks.")}
    dino = DinoViT(c, len(blocks), max(1, c // 64), patch,  # DINO's heads have 64 channels
                   int(sd["net.model.pos_embed"].shape[1]),
                   int(sd["net.model.blocks.0.mlp.fc1.weight"].shape[0]),
                   _TIMM_NAMES.get((c, patch), f"released-vit-{c}-p{patch}"))
    dino.load_state_dict(_sub(sd, "net.model."), strict=True)
    head = SegmentationHead(c, d, dropout=True, nonlinear="net.cluster2.0.weight" in sd)
    head.load_state_dict(_sub(sd, "net.cluster1.0.", "linear.")
                         | _sub(sd, "net.cluster2.", "nonlinear."), strict=True)
    cluster = ClusterProbe(d, int(sd["cluster_probe.clusters"].shape[0]))
    cluster.load_state_dict(_sub(sd, "cluster_probe."), strict=True)
    linear = LinearProbe(d, int(sd["linear_probe.weight"].shape[0]))
    linear.load_state_dict(_sub(sd, "linear_probe.", "conv."), strict=True)
    return dino, head, cluster, linear


def load_released(path: str | os.PathLike, device: str | torch.device = "cpu") -> TrainedModel:
    """Import a released STEGO/DepthG Lightning checkpoint (see the module docstring)."""
    path = Path(path)
    ckpt = read_lightning_file(path)
    sd = {k: v for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    missing = [k for k in _REQUIRED if k not in sd]
    if missing:
        raise _not_released(path, f"its state_dict lacks {', '.join(missing[:4])}"
                            f"{' …' if len(missing) > 4 else ''}")
    hp = ckpt.get("hyper_parameters") or {}
    config = plain(hp.get("cfg"))
    config = config if isinstance(config, dict) else {}
    if any(k.startswith("net.depth_downscaling.") for k in sd) or config.get("arch") not in (
            None, "dino"):
        raise _not_released(path, f"it uses arch {config.get('arch', 'dino_depth')!r}, which the "
                            "released evaluation script cannot run either; only arch 'dino' "
                            "checkpoints are supported")
    if config.get("dino_feat_type", "feat") != "feat":
        raise _not_released(path, f"its dino_feat_type is {config['dino_feat_type']!r}; only "
                            "'feat' (last-layer tokens) is supported")
    try:
        dino, head, cluster, linear = _released_modules(sd)
    except (KeyError, ValueError, RuntimeError, IndexError) as err:
        raise _not_released(path, f"its tensors do not fit the released network "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:300]})") from None
    d, k = head.linear.out_channels, linear.n_classes
    e = cluster.n_classes - k
    if e < 0:
        raise _not_released(path, f"cluster_probe has {k + e} centroids for {k} classes")
    n_classes = int(hp.get("n_classes", k))
    meta = {"format": RELEASED_FORMAT, "config": config, "path": str(path),
            "step": ckpt.get("global_step"),
            "lightning_version": ckpt.get("pytorch-lightning_version"), "n_classes": n_classes,
            "code_dim": d, "extra_clusters": e, "patch_size": dino.patch_size,
            "heads": dino.blocks[0].attn.num_heads, "depth": len(dino.blocks),
            "profile": {"backbone": dino.name, "dim": d, "n_classes": n_classes,
                        "extra_clusters": e, "nonlinear": head.nonlinear is not None,
                        "res": config.get("res"), "dataset": config.get("dataset_name")}}
    device = torch.device(device)
    for part in (dino, head, cluster, linear):
        part.to(device).eval()
    return TrainedModel(head, cluster, linear, dino.name, meta, device, dino)


def check_fits_profile(model: TrainedModel, profile) -> None:
    """Refuse a released model made for another number of classes than a profile's dataset;
    its backbone and code size may differ (evaluation uses the file's own network)."""
    profile, meta = load_profile(profile), model.meta
    if meta["n_classes"] != profile.n_classes:
        raise DepthGError(f"released checkpoint {meta['path']} does not fit profile "
                          f"{profile.name}: it has {meta['n_classes']} classes, the profile's "
                          f"{profile.dataset} data {profile.n_classes}; use the profile of its "
                          "dataset (docs/reproduction.md §6 lists them)")


def paper_numbers(profile) -> dict | None:
    """The checked `paper:` block of a profile's own file (not inherited): `source`, `crf`, the
    probes' acc and miou (percent or null), a `note` and `others` (rows beside it, each with a
    `method` and its own `source`)."""
    where = load_profile(profile).source
    block = (yaml.safe_load(Path(where).read_text()) or {}).get("paper")
    if block is None:
        return None
    out = {**_paper_row(block, where, "paper", ("source",), ("note", "others")),
           "note": block.get("note")}
    others = block.get("others") or []
    if not isinstance(others, list):
        raise DepthGError(f"profile {where}: paper.others must be a list of rows")
    out["others"] = [{"method": str(row["method"]),
                      **_paper_row(row, where, f"paper.others[{i}]", ("method", "source"))}
                     for i, row in enumerate(others)]
    return out


def _paper_row(block, where, name: str, required: tuple, extra: tuple = ()) -> dict:
    """source, crf and the two probes' numbers of one reported row, checked."""
    if not isinstance(block, dict) or not all(str(block.get(k) or "").strip() for k in required):
        raise DepthGError(f"profile {where}: {name} must be a mapping with a "
                          f"{' and a '.join(required)} (the source: the paper, its arXiv id and "
                          "the table)")
    unknown = set(block) - {"source", "crf", "unsupervised", "linear", *required, *extra}
    if unknown:
        raise DepthGError(f"profile {where}: {name} has unknown keys {sorted(unknown)}")
    if block.get("crf") not in (True, False, None):
        raise DepthGError(f"profile {where}: {name}.crf must be true, false or null")
    out = {"source": str(block["source"]), "crf": block.get("crf")}
    for probe in ("unsupervised", "linear"):
        numbers = block.get(probe) or {}
        if not isinstance(numbers, dict) or set(numbers) - {"acc", "miou"}:
            raise DepthGError(f"profile {where}: {name}.{probe} must map acc and miou to "
                              "numbers")
        for metric, value in numbers.items():
            if value is not None and (type(value) not in (int, float) or not 0 <= value <= 100):
                raise DepthGError(f"profile {where}: {name}.{probe}.{metric} must be a "
                                  f"percentage or null, found {value!r}")
        out[probe] = {m: (None if numbers.get(m) is None else float(numbers[m]))
                      for m in ("acc", "miou")}
    return out
