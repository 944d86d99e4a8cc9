"""What each profile needs and where it comes from: the catalog of backbones, depth models,
dataset archives and released checkpoints, and `plan`, a profile's list of `Item`s to fetch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import Profile, load_profile, shipped_name
from ..depth_models import DEFAULT_MODELS
from ..models import EMBEDDED, backbone_weights_dir, canonical_backbone_name

DINO_URL = "https://dl.fbaipublicfiles.com/dino/"
STEGO_URL = "https://marhamilresearch4.blob.core.windows.net/stego-public/"
ENV_DINO, ENV_STEGO = "DEPTHG_DINO_URL", "DEPTHG_STEGO_URL"
KINDS = ("backbone", "depth", "dataset", "checkpoint")
MB, GB = 1e6, 1e9

# timm name → (the DINO release's <stem>/<stem>.pth, estimated size in bytes)
DINO_FILES = {"vit_small_patch8_224.dino": ("dino_deitsmall8_300ep_pretrain", 87 * MB),
              "vit_base_patch8_224.dino": ("dino_vitbase8_pretrain", 344 * MB)}
# timm name → estimated size; from the hub repo timm/<name>, its model.safetensors
HUB_BACKBONES = {"vit_small_patch14_dinov2.lvd142m": 88 * MB,
                 "vit_base_patch14_dinov2.lvd142m": 347 * MB}
DEPTH_SIZES = {"Intel/zoedepth-nyu": 1.4 * GB,
               "depth-anything/Depth-Anything-V2-Small-hf": 0.1 * GB}
# profile dataset → (STEGO archive stem, estimated archive size, estimated extracted size)
DATASETS = {"cocostuff27": ("cocostuff", 20 * GB, 21 * GB),
            "cityscapes": ("cityscapes", 11.5 * GB, 12 * GB),
            "potsdam": ("potsdam", 1.5 * GB, 1.6 * GB)}
# profile → released checkpoint file. STEGO's are public; DepthG's are on a shared drive.
STEGO_CHECKPOINTS = {"stego-cocostuff27-vitb8": "cocostuff27_vit_base_5.ckpt",
                     "stego-cityscapes-vitb8": "cityscapes_vit_base_1.ckpt",
                     "stego-potsdam-vits8": "potsdam_test.ckpt"}
DEPTHG_CHECKPOINTS = {"cocostuff27-vits8": "cocostuff_vits.ckpt",
                      "cocostuff27-vitb8": "cocostuff_vitb.ckpt",
                      "cityscapes-vitb8": "cityscapes_vitb.ckpt",
                      "potsdam-vits8": "potsdam_vits.ckpt"}
DEPTHG_DRIVE = ("the Google Drive folder linked from the DepthG repository's README "
                "(github.com/leonsick/depthg, 'pretrained models')")


@dataclass(frozen=True)
class Item:
    """One thing a profile needs: where it comes from, where it goes, how big it is."""

    key: str  # what it is called in the plan
    kind: str  # backbone | depth | dataset | checkpoint
    dest: Path  # the file or folder the stages read
    url: str = ""  # HTTP source
    hub_repo: str = ""  # Hugging Face repo id (hub cache)
    archive: Path | None = None  # download location of a zip to extract into dest
    size: float = 0  # bytes to download (an estimate)
    extracted: float = 0  # bytes after extraction
    manual: str = ""  # not downloadable: how to get it
    dataset: str = ""  # reader to check after extraction
    note: str = ""


def released_checkpoint_path(profile: Profile | str) -> Path | None:
    """`<data_root>/models/released/<file>`, or None when no checkpoint was released for it."""
    profile = load_profile(profile)
    name = {**STEGO_CHECKPOINTS, **DEPTHG_CHECKPOINTS}.get(shipped_name(profile))
    return profile.paths.data_root / "models" / "released" / name if name else None


def plan(profile: Profile | str, only: tuple[str, ...] | None = None) -> list[Item]:
    """The items a profile needs (optionally only some kinds), from the mirrors if set."""
    profile = load_profile(profile)
    dino = (os.environ.get(ENV_DINO) or DINO_URL).rstrip("/") + "/"
    stego = (os.environ.get(ENV_STEGO) or STEGO_URL).rstrip("/") + "/"
    makers = dict(zip(KINDS, (_backbone_items, _depth_items, _dataset_items, _checkpoint_items)))
    return [item for kind in KINDS if kind in (only or KINDS)
            for item in makers[kind](profile, dino, stego)]


def _backbone_items(profile: Profile, dino: str, _stego: str) -> list[Item]:
    name, chosen = canonical_backbone_name(profile.backbone), profile.backbone_weights
    if name in EMBEDDED:
        return []
    folder = backbone_weights_dir()
    if name not in DINO_FILES:
        dest = Path(chosen) if chosen else folder / f"{name}.safetensors"
        return [Item(f"timm/{name}", "backbone", dest, hub_repo=f"timm/{name}",
                     size=HUB_BACKBONES[name])]
    stem, size = DINO_FILES[name]
    dest, note = Path(chosen) if chosen else folder / f"{name}.pth", ""
    if not chosen:
        if not dest.exists() and (folder / f"{stem}.pth").exists():
            dest = folder / f"{stem}.pth"  # placed by hand under its release name, also read
        if (folder / f"{name}.safetensors").exists() and "small" in name:
            note = (f"{folder / f'{name}.safetensors'} exists and is read before {dest.name}; "
                    "timm's ViT-S/8 file is not the 300-epoch checkpoint the released code "
                    "used — move it away")
    return [Item(f"{stem}.pth", "backbone", dest, url=f"{dino}{stem}/{stem}.pth", size=size,
                 note=note)]


def _depth_items(profile: Profile, _dino: str, _stego: str) -> list[Item]:
    if profile.depth_backend not in ("zoedepth", "depth_anything"):
        return []
    model = profile.depth_model or DEFAULT_MODELS[profile.depth_backend]
    folder = Path(os.path.expanduser(model))
    if folder.is_dir() or folder.is_absolute() or model.startswith("."):
        return [Item(model, "depth", folder, manual=f"depth_model is the folder {folder}; put "
                     "the transformers model (config.json, weights) there")]
    return [Item(model, "depth", Path(), hub_repo=model, size=DEPTH_SIZES.get(model, 0.5 * GB))]


def _dataset_items(profile: Profile, _dino: str, stego: str) -> list[Item]:
    if profile.dataset not in DATASETS:
        return []  # SynthScenes is generated (chapter 00); `directory` is the user's own
    stem, size, extracted = DATASETS[profile.dataset]
    return [Item(f"{stem}.zip", "dataset", profile.paths.dataset_dir,
                 url=f"{stego}pytorch_data/{stem}.zip", size=size, extracted=extracted,
                 archive=profile.paths.data_root / "downloads" / f"{stem}.zip",
                 dataset=profile.dataset)]


def _checkpoint_items(profile: Profile, _dino: str, stego: str) -> list[Item]:
    dest = released_checkpoint_path(profile)
    if dest is None:
        return []
    name = shipped_name(profile)
    size = 350 * MB if "vitb" in name else 95 * MB
    if name in STEGO_CHECKPOINTS:
        return [Item(dest.name, "checkpoint", dest, url=f"{stego}saved_models/{dest.name}",
                     size=size)]
    return [Item(dest.name, "checkpoint", dest, size=size,
                 manual=f"download {dest.name} from {DEPTHG_DRIVE} and put it at {dest}")]
