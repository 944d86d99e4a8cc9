"""What training reads (docs/method.md §8 steps 1–2): crops checked against what they were
made from, their kNN table, each step's batch, the feature cache; `TrainData.inputs` digests
them for `train.json`. Everything random in step k is seeded by (seed, step, rank, stream)
alone (`step_seed`), so a resumed run logs the numbers of one that never stopped."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import features as featcache
from ..config import Profile, profile_arg
from ..crop import CropReader, require_current_crops
from ..data.base import IGNORE
from ..data.readers import reader_for_profile
from ..errors import DepthGError
from ..io import record_digest
from ..knn import knn_record_path, load_knn, require_current_knn
from ..models import profile_weights_identity

# The independent random streams of one step (the last part of `step_seed`'s key).
ORDER, POSITIVE, DROPOUT, LOSS, INIT = range(5)


def step_seed(*key: int) -> int:
    """A 63-bit seed determined by the key (seed, step, rank, stream) alone."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def barrier(world: int) -> None:
    """Wait for every process (torchrun); nothing to wait for with one."""
    if world > 1:
        dist.barrier()


def array_digest(what: str, *arrays: np.ndarray) -> dict:
    """An input entry (`io.check_stage_settings`) for arrays held in memory: their contents."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype}{arr.shape}\n".encode())
        digest.update(memoryview(arr).cast("B"))
    return {"what": what, "files": len(arrays[0]) if arrays else 0,
            "digest": digest.hexdigest()[:32]}


class ArrayCrops:
    """Crops held in memory, with `CropReader`'s interface (`len`, `load(n)`): toy runs, tests."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, depth: np.ndarray):
        self.images, self.labels, self.depth = images, labels, depth

    def __len__(self) -> int:
        return len(self.images)

    def digest(self) -> dict:
        """These crops' contents, as `CropReader.digest` says it for files."""
        return array_digest(f"{len(self)} crops held in memory", self.images, self.labels,
                            self.depth)

    def load(self, n: int):
        return self.images[n], self.labels[n], self.depth[n]


@dataclass
class TrainData:
    """What training reads; `key` names the crops in the feature cache's settings, `knn_record`
    (the kNN record's digest) and `n_classes` are None for data made in memory."""

    train: object
    knn: np.ndarray
    val: object | None = None
    cache_dir: Path | None = None
    key: str = ""
    knn_record: dict | None = None
    n_classes: int | None = None

    def inputs(self) -> dict:
        """`train.json`'s inputs: the crops' digests and the kNN record's (or table's)."""
        found = {f"{split}/crops": source.digest() for split, source in
                 (("train", self.train), ("val", self.val)) if hasattr(source, "digest")}
        found["knn"] = self.knn_record or array_digest("the kNN table", self.knn)
        return found


def check_class_count(profile: Profile, data: TrainData) -> None:
    """One clear error when the profile's `n_classes` is not the data's: probes of the wrong
    size, and labels ≥ n_classes silently ignored by the scores (a val mIoU far too high)."""
    where = profile.source or f"profile {profile.name}"
    if data.n_classes and data.n_classes != profile.n_classes:
        raise DepthGError(f"profile {profile.name} sets n_classes: {profile.n_classes} but the "
                          f"{profile.dataset} dataset in {profile.paths.dataset_dir} has "
                          f"{data.n_classes} classes; set `n_classes: {data.n_classes}` in "
                          f"{where}")
    for split, source in (("training", data.train), ("validation", data.val)):
        labels = getattr(source, "labels", None)
        if not isinstance(labels, np.ndarray) or labels.size == 0:
            continue
        used = labels[labels != IGNORE]
        top = int(used.max()) if used.size else -1
        if top >= profile.n_classes:
            raise DepthGError(f"the {split} labels hold class id {top} but profile "
                              f"{profile.name} sets n_classes: {profile.n_classes}; set "
                              f"`n_classes` to the data's class count in {where}")


def open_train_data(profile: Profile) -> TrainData:
    """The profile's crops and kNN file; a stage not yet run, or run on other inputs than
    those there now, is named with its command."""
    arg = profile_arg(profile)
    crop_dir = profile.paths.crop_dir
    train = CropReader(crop_dir, "train", profile=arg)  # names the crop command if missing
    if len(train) == 0:
        raise DepthGError(f"no training crops in {crop_dir}; run the crop stage first: "
                          f"python -m depthg_lib.crop --profile {arg}")
    require_current_crops(profile, "train", "training")  # crops ← depth ← images, all current
    nns = load_knn(profile.paths.knn_file("train"), arg)
    require_current_knn(profile, train)  # mined from these crops: one row each
    record = knn_record_path(profile, "train")
    try:  # validation crops are optional: without them the probes are not scored
        val = CropReader(crop_dir, "val", profile=arg)
        val = val if len(val) else None
    except DepthGError:
        val = None
    if val is not None:
        require_current_crops(profile, "val", "training (validation)")
    try:
        n_classes = reader_for_profile(profile).n_classes or None
    except DepthGError:  # the dataset folder may be gone once cropped
        n_classes = None
    # fidelity is part of the name: it changes the resizing, hence features and depth units
    cache_dir = (profile.paths.data_root / "features" / f"{crop_dir.name}_"
                 f"{profile.backbone.replace('/', '_')}_{profile.res}_{profile.fidelity}")
    return TrainData(train=train, knn=nns, val=val, cache_dir=cache_dir, key=str(crop_dir),
                     knn_record=record_digest(record, what=f"the kNN record {record}"),
                     n_classes=n_classes)


class StepSampler(torch.utils.data.Sampler):
    """Yields, per step, this rank's share of the step's crops and their positives.

    The crop order is an endless chain of permutations, one per epoch seeded by (seed, epoch);
    step k takes items k·B … (k+1)·B−1 and draws each positive among kNN columns 1..knn_k,
    seeded by (seed, k). Rank r of W takes the r-th of W slices of that batch."""

    def __init__(self, knn: np.ndarray, knn_k: int, batch_size: int, seed: int,
                 start: int, stop: int, rank: int = 0, world: int = 1):
        if knn.ndim != 2 or knn.shape[1] <= knn_k:
            raise DepthGError(f"kNN table has shape {tuple(knn.shape)}; drawing positives "
                              f"among columns 1..{knn_k} needs at least {knn_k + 1} columns")
        if batch_size % world:
            raise DepthGError(f"batch_size {batch_size} is not divisible by the {world} "
                              "processes; choose a batch size that is")
        self.knn, self.knn_k, self.batch, self.seed = knn, knn_k, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:  # the epochs of a batch come in order: keep the latest
            rng = np.random.default_rng(step_seed(self.seed, epoch, 0, ORDER))
            self._perms = {epoch: rng.permutation(len(self.knn))}
        return self._perms[epoch]

    def __iter__(self):
        n, share = len(self.knn), self.batch // self.world
        mine = slice(self.rank * share, (self.rank + 1) * share)
        for step in range(self.start, self.stop):
            items = np.arange(step * self.batch, (step + 1) * self.batch)
            idx = np.array([self._perm(i // n)[i % n] for i in items], dtype=np.int64)
            rng = np.random.default_rng(step_seed(self.seed, step, 0, POSITIVE))
            cols = 1 + rng.integers(0, self.knn_k, size=self.batch)
            pos = self.knn[idx, cols].astype(np.int64)
            yield {"step": step, "idx": idx[mine], "pos": pos[mine]}


class CropBatches(torch.utils.data.Dataset):
    """A step's batch from the crops (decoded and resized in the loader's workers)."""

    def __init__(self, source, res: int, fidelity: str):
        self.source, self.res, self.fidelity = source, res, fidelity

    def load(self, ids):
        """(images, labels, depth (B,1,H,W)) of crops `ids`, prepared for training."""
        items = [featcache.prepare_crop(*self.source.load(int(i)), self.res, self.fidelity)
                 for i in ids]
        images, labels, depth = (torch.from_numpy(np.stack(part)) for part in zip(*items))
        return images, labels, depth[:, None]

    def __getitem__(self, item):
        image, label, depth = self.load(item["idx"])
        image_pos, _, depth_pos = self.load(item["pos"])
        return {"step": item["step"], "image": image, "image_pos": image_pos, "label": label,
                "depth": depth, "depth_pos": depth_pos}


class CachedBatches(torch.utils.data.Dataset):
    """A whole step's batch read from the frozen-feature cache (no backbone call)."""

    def __init__(self, cached: featcache.CachedSplit):
        self.cached = cached

    def __getitem__(self, item):
        c, idx, pos = self.cached, item["idx"], item["pos"]
        return {"step": item["step"], "feats": rows(c.feats, idx),
                "feats_pos": rows(c.feats, pos), "label": rows(c.labels, idx),
                "depth": rows(c.depth, idx)[:, None], "depth_pos": rows(c.depth, pos)[:, None]}


def rows(arr, ids) -> torch.Tensor:  # of a memory-mapped cache array
    return torch.from_numpy(np.ascontiguousarray(arr[ids]))


def cache_settings(profile: Profile, data: TrainData, backbone) -> dict:
    """What the frozen-feature cache depends on (a cache made with others is rebuilt)."""
    return {"version": featcache.CACHE_VERSION, "crops": data.key, "backbone": profile.backbone,
            "weights": profile_weights_identity(profile),
            "dim": backbone.dim, "patch_size": backbone.patch_size, "res": profile.res,
            "fidelity": profile.fidelity, "n_train": len(data.train),
            "n_val": len(data.val) if data.val is not None else 0}


def prepare_caches(profile, data, backbone, device, rank, world, progress):
    """Build (rank 0) or open the frozen-feature cache of the train and val crops."""
    folder = Path(data.cache_dir)
    settings = cache_settings(profile, data, backbone)
    splits = [("train", data.train)] + ([("val", data.val)] if data.val is not None else [])
    if rank == 0:
        if any(featcache.open_cache(folder, n, settings, source=s) is None for n, s in splits):
            n_crops = sum(len(source) for _, source in splits)  # a complete cache needs no room
            featcache.check_budget(n_crops, backbone, profile.res, profile.feature_cache_gb, folder)
        for name, source in splits:
            featcache.build_cache(source, name, folder, backbone, res=profile.res,
                                  fidelity=profile.fidelity, settings=settings, device=device,
                                  progress=progress)
    barrier(world)
    # keyed by the crops' digest too: features of crops cut afresh are never read
    caches = {name: featcache.open_cache(folder, name, settings, source=source)
              for name, source in splits}
    if any(c is None for c in caches.values()):
        raise DepthGError(f"the frozen-feature cache in {folder} is incomplete or was made from "
                          "other crops; delete the folder and run training again")
    return caches
