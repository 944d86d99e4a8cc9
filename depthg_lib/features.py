"""What the training step reads: crops at training size, and the frozen-feature cache (§8):
frozen backbone, no augmentation, so a crop's features are computed once into fp16 memory maps;
`features.json` records the settings and each split's crop digest (either changed: rebuilt)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from .depth_format import depth_from_uint16
from .errors import DepthGError
from .io import as_recorded, atomic_path, free_bytes, load_json, save_json
from .transforms import resize_center_crop

CACHE_VERSION = 1


def prepare_crop(image: np.ndarray, label: np.ndarray, depth: np.ndarray, res: int,
                 fidelity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop at training size: image uint8 (3,res,res), label uint8, depth float32 in the loss's
    units; image and depth nearest as released (golden README note 7), else bilinear."""
    smooth = "nearest" if fidelity == "released" else "bilinear"
    image = resize_center_crop(np.asarray(image, dtype=np.uint8), res, smooth)
    label = resize_center_crop(np.asarray(label, dtype=np.uint8), res, "nearest")
    d = resize_center_crop(depth_from_uint16(depth, fidelity), res, smooth)
    return image.transpose(2, 0, 1).copy(), label, d.astype(np.float32)


@dataclass
class CachedSplit:
    """Read-only memory maps of one split, opened lazily: DataLoader workers never pickle them."""

    folder: Path
    split: str

    def _map(self, key: str) -> np.ndarray:
        return np.load(self.folder / f"{key}_{self.split}.npy", mmap_mode="r")

    def __getstate__(self):  # without the maps: they are opened again where unpickled
        return {"folder": self.folder, "split": self.split}

    def __len__(self) -> int:
        return len(self.labels)

    feats = cached_property(lambda self: self._map("feats"))
    labels = cached_property(lambda self: self._map("labels"))
    depth = cached_property(lambda self: self._map("depth"))


def check_budget(n_crops: int, backbone, res: int, budget_gb: float, folder: Path) -> None:
    """Refuse a cache of `n_crops` (fp16 features + uint8 labels + float32 depth) larger than the
    profile's `feature_cache_gb` or the free disk."""
    need = n_crops * (backbone.dim * (res // backbone.patch_size) ** 2 * 2 + res * res * (1 + 4))
    free = free_bytes(folder)
    fix = ("raise `feature_cache_gb` in the profile, free disk space, or set "
           "`precompute_features: false` to featurise on the fly")
    if need > budget_gb * 1e9:
        raise DepthGError(f"the frozen-feature cache needs {need / 1e9:.2f} GB in {folder}, more "
                          f"than the profile's feature_cache_gb = {budget_gb:g} GB; {fix}")
    if need > free:
        raise DepthGError(f"the frozen-feature cache needs {need / 1e9:.2f} GB in {folder} but "
                          f"only {free / 1e9:.2f} GB are free there; {fix}")


def source_digest(source) -> str | None:
    """`source.digest()` of a `CropReader`; None for in-memory crops (keyed by settings alone)."""
    return source.digest()["digest"] if hasattr(source, "digest") else None


def open_cache(folder: Path, split: str, settings: dict, source=None) -> CachedSplit | None:
    """The cached split if made with these settings (and, given `source`, its crops), else None."""
    record = folder / "features.json"
    meta = load_json(record) if record.exists() else {}
    entry = meta["splits"].get(split) if meta.get("settings") == as_recorded(settings) else None
    if entry is None or entry.get("inputs") != source_digest(source) or not all(
            (folder / f"{k}_{split}.npy").exists() for k in ("feats", "labels", "depth")):
        return None
    return CachedSplit(folder, split)


@torch.no_grad()
def build_cache(source, split: str, folder: Path, backbone, *, res: int, fidelity: str,
                settings: dict, device: torch.device, batch_size: int = 32,
                progress: bool = True) -> CachedSplit:
    """Featurise every crop of `source` (`len`, `load(n)`) into the split's memory maps, unless
    the cache holds it (the caller checks the disk budget: `check_budget`)."""
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / ".features.lock"):  # two trainings sharing a cache: one builds it
        cached = open_cache(folder, split, settings, source=source)
        if cached is not None:
            return cached
        inputs = source_digest(source)  # what is read below, before it is read
        record = folder / "features.json"
        meta = load_json(record) if record.exists() else {}
        if meta.get("settings") != as_recorded(settings):  # other settings: start afresh
            meta = {"version": CACHE_VERSION, "settings": as_recorded(settings), "splits": {}}
            for old in folder.glob("*.npy"):
                old.unlink()
        n = len(source)
        grid = (res // backbone.patch_size,) * 2
        layout = {"feats": (np.float16, (n, backbone.dim, *grid)),
                  "labels": (np.uint8, (n, res, res)), "depth": (np.float32, (n, res, res))}
        with contextlib.ExitStack() as stack:
            arrays = {k: np.lib.format.open_memmap(
                stack.enter_context(atomic_path(folder / f"{k}_{split}.npy")), mode="w+",
                dtype=dtype, shape=shape) for k, (dtype, shape) in layout.items()}
            with tqdm(total=n, desc=f"features {split}", disable=not progress, leave=False) as bar:
                for start in range(0, n, batch_size):
                    rows = slice(start, min(n, start + batch_size))
                    crops = [prepare_crop(*source.load(i), res, fidelity) for i in range(n)[rows]]
                    images, labels, depth = (np.stack(part) for part in zip(*crops))
                    f = featurize(backbone, torch.from_numpy(images).to(device))
                    arrays["feats"][rows] = f.float().cpu().numpy()
                    arrays["labels"][rows], arrays["depth"][rows] = labels, depth
                    bar.update(len(crops))
            for arr in arrays.values():
                arr.flush()
            del arrays  # the memory maps are closed before the files take their names
        meta["splits"][split] = {"n": n, "grid": list(grid), "dim": backbone.dim,
                                 "inputs": inputs}
        save_json(record, meta)
        return CachedSplit(folder, split)


@torch.no_grad()
def featurize(backbone, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) → frozen features (B,D,h,w); on CUDA in bf16, channels-last."""
    x = images.float().div_(255.0)
    if x.is_cuda:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return backbone(x.contiguous(memory_format=torch.channels_last))
    return backbone(x)
