"""What the training step reads: crops at training size, depth in the fidelity's units, and the
frozen-feature cache (docs/method.md §8).

The backbone is frozen and training applies no augmentation, so a crop's features never
change: with `precompute_features` they are computed once (fp16, one `.npy` memory map per
split) and every later step reads them instead of running the ViT twice per image. Dropout is
still drawn per step, on the cached features. The cache lives in
`<data_root>/features/<crops>_<backbone>_<res>_<fidelity>/` (the fidelity decides how crops
are resized and the depth units), shared by every run and ablation variant with the same
crops, backbone, weights, resolution and fidelity; `features.json` records those settings
and a cache made with other settings is rebuilt, never mixed. Each split is also keyed by
the digest of the crops it was made from (`source_digest`: the crop record, names file and
crop files), so crops cut afresh from a regenerated dataset — same folder, same counts —
rebuild the split instead of training on the old features, labels and depth.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from tqdm.auto import tqdm

from .depth_format import depth_from_uint16
from .errors import DepthGError
from .io import atomic_path, load_json, save_json
from .transforms import resize_center_crop

CACHE_VERSION = 1
FEATURE_DTYPE = np.float16


# ------------------------------------------------------------------------- crop → inputs

def depth_units(depth: np.ndarray, fidelity: str) -> np.ndarray:
    """Stored 16-bit depth → the units the loss expects (float32): `released` the 8-bit
    integers 0..255 of the released loader, `corrected` [0, 1] (`depth_from_uint16`)."""
    return depth_from_uint16(depth, fidelity)


def prepare_crop(image: np.ndarray, label: np.ndarray, depth: np.ndarray, res: int,
                 fidelity: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One crop at training size: image uint8 (3,res,res), label uint8, depth float32.

    Labels always keep nearest-neighbour values. `released`: image and depth nearest as well
    (STEGO's transform, golden README note 7; the released loader treats the depth PNG like a
    label). `corrected`: image and depth bilinear (PIL, antialiased when shrinking), as the
    kNN and evaluation stages resize in that fidelity — depth is a continuous quantity.
    """
    smooth = "nearest" if fidelity == "released" else "bilinear"
    image = resize_center_crop(np.asarray(image, dtype=np.uint8), res, smooth)
    label = resize_center_crop(np.asarray(label, dtype=np.uint8), res, "nearest")
    d = resize_center_crop(depth_units(depth, fidelity), res, smooth)
    return image.transpose(2, 0, 1).copy(), label, d.astype(np.float32)


# ------------------------------------------------------------------------- the cache

@dataclass
class CachedSplit:
    """Read-only memory maps of one split: feats (N,D,h,w) fp16, labels (N,res,res) uint8,
    depth (N,res,res) float32. Opened lazily so DataLoader workers never pickle the data."""

    folder: Path
    split: str
    _arrays: dict | None = None

    def _open(self) -> dict:
        if self._arrays is None:
            self._arrays = {k: np.load(self.folder / f"{k}_{self.split}.npy", mmap_mode="r")
                            for k in ("feats", "labels", "depth")}
        return self._arrays

    def __getstate__(self):
        return {"folder": self.folder, "split": self.split, "_arrays": None}

    def __len__(self) -> int:
        return len(self._open()["labels"])

    @property
    def feats(self) -> np.ndarray:
        return self._open()["feats"]

    @property
    def labels(self) -> np.ndarray:
        return self._open()["labels"]

    @property
    def depth(self) -> np.ndarray:
        return self._open()["depth"]


def cache_bytes(n_crops: int, dim: int, grid_hw: tuple[int, int], res: int) -> int:
    """Disk bytes of one split's cache: fp16 features + uint8 labels + float32 depth."""
    per_crop = dim * grid_hw[0] * grid_hw[1] * 2 + res * res * (1 + 4)
    return n_crops * per_crop


def check_budget(need: int, budget_gb: float, folder: Path) -> None:
    """Refuse a cache larger than the profile's `feature_cache_gb` or the free disk."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    fix = ("raise `feature_cache_gb` in the profile, free disk space, or set "
           "`precompute_features: false` to featurise on the fly")
    if need > budget_gb * 1e9:
        raise DepthGError(f"the frozen-feature cache needs {need / 1e9:.2f} GB in {folder}, more "
                          f"than the profile's feature_cache_gb = {budget_gb:g} GB; {fix}")
    if need > free:
        raise DepthGError(f"the frozen-feature cache needs {need / 1e9:.2f} GB in {folder} but "
                          f"only {free / 1e9:.2f} GB are free there; {fix}")


def source_digest(source) -> str | None:
    """The digest of what a split's cache is made from: `source.digest()` (a `CropReader`),
    or None for a source that cannot say (in-memory crops: keyed by settings alone)."""
    digest = getattr(source, "digest", None)
    if not callable(digest):
        return None
    value = digest()
    return value.get("digest") if isinstance(value, dict) else str(value)


def open_cache(folder: Path, split: str, settings: dict, source=None) -> CachedSplit | None:
    """The cached split if it exists and was made with exactly these settings — and, given
    `source`, from the crops it holds now (`source_digest`) — else None."""
    record = folder / "features.json"
    if not record.exists():
        return None
    meta = load_json(record)
    if meta.get("settings") != _jsonable(settings) or split not in meta.get("splits", {}):
        return None
    if source is not None:
        recorded = meta["splits"][split].get("inputs")
        if recorded != source_digest(source):
            return None
    if not all((folder / f"{k}_{split}.npy").exists() for k in ("feats", "labels", "depth")):
        return None
    return CachedSplit(folder, split)


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=str))


@torch.no_grad()
def build_cache(source, split: str, folder: Path, backbone, *, res: int, fidelity: str,
                settings: dict, device: torch.device, batch_size: int = 32,
                budget_gb: float = 20.0, progress: bool = True, reserved: int = 0) -> CachedSplit:
    """Featurise every crop of `source` once and write the split's memory maps atomically.

    `source` is anything with `__len__` and `load(n) -> (image, label, depth)` (a
    `CropReader`). `reserved` is bytes other splits of the same cache take (budget check).
    A split made from other crops than `source` holds now is rebuilt (`source_digest`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / ".features.lock"):  # two trainings sharing a cache: one builds it
        return _build_cache(source, split, folder, backbone, res=res, fidelity=fidelity,
                            settings=settings, device=device, batch_size=batch_size,
                            budget_gb=budget_gb, progress=progress, reserved=reserved)


def _build_cache(source, split, folder, backbone, *, res, fidelity, settings, device,
                 batch_size, budget_gb, progress, reserved) -> CachedSplit:
    cached = open_cache(folder, split, settings, source=source)
    if cached is not None:
        return cached
    inputs = source_digest(source)
    record = folder / "features.json"
    meta = load_json(record) if record.exists() else {}
    if meta.get("settings") != _jsonable(settings):  # other settings: start the cache afresh
        meta = {"version": CACHE_VERSION, "settings": _jsonable(settings), "splits": {}}
        for old in folder.glob("*.npy") if folder.exists() else []:
            old.unlink()
    n = len(source)
    p = backbone.patch_size
    grid = (res // p, res // p)
    check_budget(cache_bytes(n, backbone.dim, grid, res) + reserved, budget_gb, folder)

    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(folder / f"{k}_{split}.npy"))
               for k in ("feats", "labels", "depth")}
        feats = np.lib.format.open_memmap(tmp["feats"], mode="w+", dtype=FEATURE_DTYPE,
                                          shape=(n, backbone.dim, *grid))
        labels = np.lib.format.open_memmap(tmp["labels"], mode="w+", dtype=np.uint8,
                                           shape=(n, res, res))
        depth = np.lib.format.open_memmap(tmp["depth"], mode="w+", dtype=np.float32,
                                          shape=(n, res, res))
        bar = tqdm(total=n, desc=f"features {split}", disable=not progress, leave=False)
        for start in range(0, n, batch_size):
            idx = range(start, min(n, start + batch_size))
            items = [prepare_crop(*source.load(i), res, fidelity) for i in idx]
            images = torch.from_numpy(np.stack([it[0] for it in items])).to(device)
            f = featurize(backbone, images)
            if f.shape[-2:] != grid:
                raise DepthGError(f"backbone {settings.get('backbone')} returned a "
                                  f"{tuple(f.shape[-2:])} feature grid for {res}px crops, "
                                  f"expected {grid}")
            feats[idx.start:idx.stop] = f.float().cpu().numpy().astype(FEATURE_DTYPE)
            labels[idx.start:idx.stop] = np.stack([it[1] for it in items])
            depth[idx.start:idx.stop] = np.stack([it[2] for it in items])
            bar.update(len(idx))
        bar.close()
        for arr in (feats, labels, depth):
            arr.flush()
        del feats, labels, depth
    meta["splits"][split] = {"n": n, "grid": list(grid), "dim": backbone.dim, "inputs": inputs}
    save_json(record, meta)
    return CachedSplit(folder, split)


def featurize(backbone, images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) on the backbone's device → frozen features (B,D,h,w), no gradient.

    On CUDA the ViT runs in bf16 autocast with channels-last input (the GPU path).
    """
    x = images.float().div_(255.0)
    with torch.no_grad():
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return backbone(x)
        return backbone(x)
