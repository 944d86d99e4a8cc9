"""Chapter 04: train the DepthG segmentation head on frozen backbone features (SPEC §8).

    python -m depthg_lib.train --profile demo [--resume] [--force] [--device cpu|cuda]
                               [--steps N] [--out DIR] [--seed K]
    torchrun --nproc-per-node 2 -m depthg_lib.train --profile demo     # DDP (issue 8)

Per step: features of a batch of crops and of their kNN positives (frozen backbone, or the
frozen-feature cache), head → codes, the DepthG loss (SPEC §6), the linear probe
(cross-entropy on the *detached* code upsampled to label size) and the cluster probe on the
detached code; one backward, three Adam steps; then the depth-weight and sample-count
schedules. Writes `<out>/log.csv`, TensorBoard events in `<out>/tb/`, and
`<out>/checkpoints/{last,final}.pt`.

Exact resume: everything random in step k (which crops, which positives, dropout masks,
sample points) is drawn from generators seeded by (seed, k) alone, so a run interrupted at
step k and resumed logs the same numbers as one that never stopped.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import random
import shutil
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import features as featcache
from .config import PROFILE_DIR, Profile, load_profile
from .env import resolve_device
from .errors import DepthGError, run_cli
from .io import atomic_path, check_stage_settings
from .losses import depthg_loss
from .models import profile_weights_identity, weights_identity

CHECKPOINT_FORMAT = "depthg-checkpoint-1"
LOSS_TERMS = ("pos_intra", "pos_inter", "neg_inter", "depth")
# Per-step numbers, in log.csv column order. `loss` = weighted DepthG loss, `total` adds the
# two probe losses (what backward sees).
STEP_VALUES = (*LOSS_TERMS, "loss", "linear_loss", "cluster_loss", "total")
VAL_COLUMNS = ("val_linear_miou", "val_linear_acc", "val_cluster_miou", "val_cluster_acc")
LOG_COLUMNS = ("step", "samples", "weight_depth", "shift_depth", *STEP_VALUES, *VAL_COLUMNS)
# Settings that do not change what training computes: a resumed run may differ in them.
_BOOKKEEPING = {"name", "description", "source", "steps", "val_every", "val_images",
                "checkpoint_every", "num_workers", "precompute_features", "feature_cache_gb",
                "eval_res", "crf", "ablation_seeds", "ablation_steps", "depth_batch",
                "knn_block"}
# Independent random streams of one step (see _seed).
_ORDER, _POSITIVE, _DROPOUT, _LOSS, _INIT = range(5)


def _seed(*key: int) -> int:
    """A 63-bit seed determined by the key (seed, step, rank, stream) alone."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _profile_arg(profile: Profile) -> str:
    """How a command names this profile: its name if it is a shipped one, else its file."""
    src = Path(profile.source) if profile.source else None
    if src is None or src.parent.resolve() == PROFILE_DIR.resolve():
        return profile.name
    return str(src)


# ------------------------------------------------------------------------------ data

class ArrayCrops:
    """Crops held in memory, with `CropReader`'s interface (`len`, `load(n)`): toy runs, tests."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, depth: np.ndarray):
        if not (len(images) == len(labels) == len(depth)):
            raise DepthGError(f"ArrayCrops needs as many images, labels and depth maps, got "
                              f"{len(images)}, {len(labels)}, {len(depth)}")
        self.images, self.labels, self.depth = images, labels, depth

    def __len__(self) -> int:
        return len(self.images)

    def load(self, n: int):
        return self.images[n], self.labels[n], self.depth[n]


@dataclass
class TrainData:
    """What training reads: training crops, their kNN table, validation crops (or None).

    `cache_dir` is where the frozen-feature cache goes; `key` names the crops in its record.
    """

    train: object
    knn: np.ndarray
    val: object | None = None
    cache_dir: Path | None = None
    key: str = ""


def open_train_data(profile: Profile) -> TrainData:
    """The profile's crops and kNN file; a stage not yet run is named with its command."""
    from .crop import CropReader

    arg = _profile_arg(profile)
    crop_dir = profile.paths.crop_dir
    train = CropReader(crop_dir, "train", profile=arg)  # names the crop command if missing
    n = len(train)
    if n == 0:
        raise DepthGError(f"no training crops in {crop_dir}; run the crop stage first: "
                          f"python -m depthg_lib.crop --profile {arg}")
    knn_file = profile.paths.knn_file("train")
    if not knn_file.exists():
        raise DepthGError(f"kNN file {knn_file} does not exist; mine the neighbours first: "
                          f"python -m depthg_lib.knn --profile {arg}")
    try:
        nns = np.load(knn_file)["nns"]
    except (KeyError, ValueError, OSError) as err:
        raise DepthGError(f"cannot read key 'nns' from {knn_file} ({err}); re-create it: "
                          f"python -m depthg_lib.knn --profile {arg} --force") from None
    if len(nns) != n:
        raise DepthGError(f"kNN file {knn_file} has {len(nns)} rows but {crop_dir} holds {n} "
                          f"training crops; re-create it: python -m depthg_lib.knn --profile "
                          f"{arg} --force")
    try:  # validation crops are optional: without them the probes are not scored
        val = CropReader(crop_dir, "val", profile=arg)
        val = val if len(val) else None
    except DepthGError:
        val = None
    # fidelity is part of the name: it changes the resizing, hence features and depth units
    cache_dir = (profile.paths.data_root / "features" / f"{crop_dir.name}_"
                 f"{profile.backbone.replace('/', '_')}_{profile.res}_{profile.fidelity}")
    return TrainData(train=train, knn=nns, val=val, cache_dir=cache_dir, key=str(crop_dir))


class StepSampler(torch.utils.data.Sampler):
    """Yields, per step, this rank's share of the step's crops and their positives.

    The crop order is an endless chain of permutations (one per epoch, seeded by (seed, epoch));
    step k takes items k·B … (k+1)·B−1 of it and draws each positive uniformly among kNN
    columns 1..knn_k with a generator seeded by (seed, k). Rank r of W takes the r-th of W
    equal slices, so W ranks see exactly the batch one process would.
    """

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
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            rng = np.random.default_rng(_seed(self.seed, epoch, 0, _ORDER))
            self._perms[epoch] = rng.permutation(len(self.knn))
        return self._perms[epoch]

    def batch_for(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(crop ids, positive ids) of the whole step, before the split between ranks."""
        n = len(self.knn)
        pos = np.arange(step * self.batch, (step + 1) * self.batch)
        idx = np.array([self._perm(p // n)[p % n] for p in pos], dtype=np.int64)
        rng = np.random.default_rng(_seed(self.seed, step, 0, _POSITIVE))
        cols = 1 + rng.integers(0, self.knn_k, size=self.batch)
        return idx, self.knn[idx, cols].astype(np.int64)

    def __iter__(self):
        share = self.batch // self.world
        for step in range(self.start, self.stop):
            idx, pos = self.batch_for(step)
            sl = slice(self.rank * share, (self.rank + 1) * share)
            yield {"step": step, "idx": idx[sl], "pos": pos[sl]}


class _CropBatches(torch.utils.data.Dataset):
    """A whole step's batch from the crops (decoded and resized in the loader's workers)."""

    def __init__(self, source, res: int, fidelity: str):
        self.source, self.res, self.fidelity = source, res, fidelity

    def _load(self, ids):
        items = [featcache.prepare_crop(*self.source.load(int(i)), self.res, self.fidelity)
                 for i in ids]
        return (torch.from_numpy(np.stack([it[0] for it in items])),
                torch.from_numpy(np.stack([it[1] for it in items])),
                torch.from_numpy(np.stack([it[2] for it in items]))[:, None])

    def __getitem__(self, item):
        image, label, depth = self._load(item["idx"])
        image_pos, _, depth_pos = self._load(item["pos"])
        return {"step": item["step"], "image": image, "image_pos": image_pos, "label": label,
                "depth": depth, "depth_pos": depth_pos}


class _CachedBatches(torch.utils.data.Dataset):
    """A whole step's batch read from the frozen-feature cache (no backbone call)."""

    def __init__(self, cached: featcache.CachedSplit):
        self.cached = cached

    def __getitem__(self, item):
        c = self.cached

        def rows(arr, ids):
            return torch.from_numpy(np.ascontiguousarray(arr[ids]))

        return {"step": item["step"], "feats": rows(c.feats, item["idx"]),
                "feats_pos": rows(c.feats, item["pos"]), "label": rows(c.labels, item["idx"]),
                "depth": rows(c.depth, item["idx"])[:, None],
                "depth_pos": rows(c.depth, item["pos"])[:, None]}


# ------------------------------------------------------------------------------ model

@dataclass
class Schedule:
    """Values that change during training (SPEC §8; golden README note 4)."""

    samples: int
    weight_depth: float
    shift_depth: float

    @classmethod
    def start(cls, profile: Profile) -> Schedule:
        return cls(profile.samples, profile.weight_depth, profile.shift_depth)

    def advance(self, step: int, profile: Profile) -> None:
        """Apply the decays due after `step`.

        Depth weight and shift: × factor every `depth_decay_every` steps, never at step 0.
        Sample count S: `max(int(S·factor), fps_min_samples)` every `fps_sample_decay_every`
        steps, at step 0 too in `released` (the released quirk: 11×11 only at step 0, 9×9
        from step 1), not at step 0 in `corrected`.
        """
        if step > 0 and step % profile.depth_decay_every == 0:
            self.weight_depth *= profile.depth_decay_factor
            self.shift_depth *= profile.depth_decay_factor
        if (profile.fps_sample_decay and step % profile.fps_sample_decay_every == 0
                and (step > 0 or profile.fidelity == "released")):
            self.samples = max(int(self.samples * profile.fps_sample_decay_factor),
                               profile.fps_min_samples)


class DepthGModel(nn.Module):
    """Head and both probes in one module (one DDP wrapper synchronises all three).

    `forward` returns the codes of image and positive and the two probe losses, computed on
    the detached code: the probes measure the head, they never train it (SPEC §5).
    """

    def __init__(self, backbone_dim: int, code_dim: int, n_classes: int, extra_clusters: int = 0,
                 dropout: bool = True, nonlinear: bool = True):
        from .models import ClusterProbe, LinearProbe, SegmentationHead

        super().__init__()
        self.head = SegmentationHead(backbone_dim, code_dim, dropout=dropout, nonlinear=nonlinear)
        self.cluster_probe = ClusterProbe(code_dim, n_classes + extra_clusters)
        self.linear_probe = LinearProbe(code_dim, n_classes)

    def forward(self, feats: torch.Tensor, feats_pos: torch.Tensor, label: torch.Tensor):
        code, code_pos = self.head(torch.cat([feats, feats_pos])).chunk(2)
        detached = code.detach()
        linear_loss = self.linear_probe.loss(detached, label)
        cluster_loss, _ = self.cluster_probe(detached, None)
        return code, code_pos, linear_loss, cluster_loss


def _check_shapes(feats, feats_pos, label, depth, depth_pos, samples: int) -> None:
    b, _, h, w = feats.shape
    if feats_pos.shape != feats.shape:
        raise DepthGError(f"features of the images {tuple(feats.shape)} and of their positives "
                          f"{tuple(feats_pos.shape)} differ in shape")
    for name, t in (("depth", depth), ("depth_pos", depth_pos)):
        if t.dim() != 4 or t.shape[0] != b or t.shape[1] != 1:
            raise DepthGError(f"{name} must be (B,1,H,W) with B = {b}, got {tuple(t.shape)}")
    if label.dim() != 3 or label.shape[0] != b:
        raise DepthGError(f"labels must be (B,H,W) with B = {b}, got {tuple(label.shape)}")
    if samples > min(h, w):
        raise DepthGError(f"the sample grid S = {samples} is larger than the {h}×{w} feature "
                          "grid; lower `samples` (and `fps_min_samples`) or raise `res`")


class Trainer:
    """Head, probes, their three Adam optimisers and the schedules; `step` trains one step.

    Under `torch.distributed` (W > 1 processes) the model is wrapped in
    DistributedDataParallel: each rank gets B/W crops and the averaged gradient is exactly the
    one-process gradient of the mean loss, so all ranks take one process's step.
    """

    def __init__(self, profile: Profile, backbone_dim: int, device: torch.device,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.profile, self.device, self.seed = profile, device, seed
        self.rank, self.world = rank, world
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(seed, 0, 0, _INIT))
            model = DepthGModel(backbone_dim, profile.dim, profile.n_classes,
                                profile.extra_clusters, profile.dropout, profile.nonlinear)
        self.model = model.to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizers = {
            "head": torch.optim.Adam(self.model.head.parameters(), lr=profile.lr),
            "cluster_probe": torch.optim.Adam(self.model.cluster_probe.parameters(),
                                              lr=profile.probe_lr),
            "linear_probe": torch.optim.Adam(self.model.linear_probe.parameters(),
                                             lr=profile.probe_lr)}
        self.schedule = Schedule.start(profile)

    def step(self, step: int, feats: torch.Tensor, feats_pos: torch.Tensor, label: torch.Tensor,
             depth: torch.Tensor, depth_pos: torch.Tensor) -> dict:
        """One optimiser step; returns the step's numbers (0-d tensors, not yet synchronised)."""
        p, sch = self.profile, self.schedule
        _check_shapes(feats, feats_pos, label, depth, depth_pos, sch.samples)
        torch.manual_seed(_seed(self.seed, step, self.rank, _DROPOUT))  # head + loss dropout
        gen = torch.Generator(device=feats.device)
        gen.manual_seed(_seed(self.seed, step, self.rank, _LOSS))  # sample points, negatives
        self.net.train()
        cuda = feats.is_cuda
        if cuda:
            feats = feats.contiguous(memory_format=torch.channels_last)
            feats_pos = feats_pos.contiguous(memory_format=torch.channels_last)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
        with amp:
            code, code_pos, linear_loss, cluster_loss = self.net(feats, feats_pos, label)
        terms = depthg_loss(
            feats.float(), feats_pos.float(), code.float(), code_pos.float(), depth, depth_pos,
            n_samples=sch.samples, sampling=p.sampling, fidelity=p.fidelity,
            weights={**p.weights, "depth": sch.weight_depth},
            shifts={**p.shifts, "depth": sch.shift_depth}, neg_samples=p.neg_samples,
            pointwise=p.pointwise, zero_clamp=p.zero_clamp, stabilize=p.stabilize,
            use_depth=p.use_depth, feature_dropout=p.feature_dropout,
            generator=gen)
        total = terms["total"] + linear_loss.float() + cluster_loss.float()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self.optimizers.values():
            opt.step()
        record = {"step": step, "samples": sch.samples, "weight_depth": sch.weight_depth,
                  "shift_depth": sch.shift_depth}
        values = [terms[k].detach().float() for k in LOSS_TERMS]
        values += [terms["total"].detach().float(), linear_loss.detach().float(),
                   cluster_loss.detach().float(), total.detach()]
        record["values"] = torch.stack([v.reshape(()) for v in values])
        sch.advance(step, p)
        return record

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"head": self.model.head.state_dict(),
                "cluster_probe": self.model.cluster_probe.state_dict(),
                "linear_probe": self.model.linear_probe.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedule": dataclasses.asdict(self.schedule)}

    def load_state_dict(self, state: dict) -> None:
        self.model.head.load_state_dict(state["head"])
        self.model.cluster_probe.load_state_dict(state["cluster_probe"])
        self.model.linear_probe.load_state_dict(state["linear_probe"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.schedule = Schedule(**state["schedule"])


# ------------------------------------------------------------------------------ metrics

class _Validation:
    """Probe metrics on (a subset of) the validation crops, at training resolution."""

    def __init__(self, profile: Profile, source, cached: featcache.CachedSplit | None,
                 backbone, device: torch.device, batch_size: int = 32):
        self.profile, self.backbone, self.device, self.batch = profile, backbone, device, batch_size
        n = len(cached) if cached is not None else len(source)
        k = profile.val_images
        self.ids = (np.arange(n) if not k or k >= n
                    else np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)))
        self.cached, self.source = cached, source

    def _batches(self):
        for start in range(0, len(self.ids), self.batch):
            ids = self.ids[start:start + self.batch]
            if self.cached is not None:
                feats = torch.from_numpy(np.ascontiguousarray(self.cached.feats[ids]))
                label = torch.from_numpy(np.ascontiguousarray(self.cached.labels[ids]))
                yield feats.to(self.device).float(), label
                continue
            items = [featcache.prepare_crop(*self.source.load(int(i)), self.profile.res,
                                            self.profile.fidelity) for i in ids]
            images = torch.from_numpy(np.stack([it[0] for it in items]))
            label = torch.from_numpy(np.stack([it[1] for it in items]))
            yield featcache.featurize(self.backbone, images.to(self.device)).float(), label

    @torch.no_grad()
    def __call__(self, model: DepthGModel) -> dict[str, float]:
        from .evaluate import confusion_histogram as hist_fn
        from .evaluate import scores as score_fn

        p = self.profile
        was_training = model.training
        model.eval()
        n_cls, extra = p.n_classes, p.extra_clusters
        lin = np.zeros((n_cls, n_cls), np.int64)
        clu = np.zeros((n_cls + extra, n_cls), np.int64)
        for feats, label in self._batches():
            code = model.head(feats).float()
            code = F.interpolate(code, size=label.shape[-2:], mode="bilinear",
                                 align_corners=False)
            target = label.numpy().astype(np.int64)
            target[(target < 0) | (target >= n_cls)] = -1
            lin += hist_fn(model.linear_probe(code).argmax(1).cpu().numpy(), target, n_cls)
            _, probs = model.cluster_probe(code, None)
            clu += hist_fn(probs.argmax(1).cpu().numpy(), target, n_cls, extra)
        model.train(was_training)
        ls, cs = score_fn(lin, hungarian=False), score_fn(clu, hungarian=True)
        return {"val_linear_miou": float(ls["miou"]), "val_linear_acc": float(ls["acc"]),
                "val_cluster_miou": float(cs["miou"]), "val_cluster_acc": float(cs["acc"])}


# ------------------------------------------------------------------------------ logging

class RunLog:
    """`log.csv` (every step, validation columns filled at validation steps) and TensorBoard."""

    def __init__(self, out: Path, start: int, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = out / "log.csv"
        self.writer = None
        if not enabled:
            return
        kept = []
        if start > 0 and self.path.exists():  # drop rows logged after the checkpoint
            with open(self.path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) < start]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, LOG_COLUMNS)
                w.writeheader()
                w.writerows(kept)
        self._fh = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._fh, LOG_COLUMNS)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: the CSV alone
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(out / "tb"), purge_step=start)

    def write(self, rows: list[dict]) -> None:
        if not self.enabled:
            return
        for row in rows:
            self._csv.writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})
            if self.writer is not None:
                s = row["step"]
                for k in STEP_VALUES:
                    self.writer.add_scalar(f"loss/{k}", row[k], s)
                for k in ("samples", "weight_depth", "shift_depth"):
                    self.writer.add_scalar(f"schedule/{k}", row[k], s)
                for k in VAL_COLUMNS:
                    if row.get(k) is not None:
                        self.writer.add_scalar(f"val/{k[4:]}", row[k], s)
        self._fh.flush()

    def close(self) -> None:
        if self.enabled:
            self._fh.close()
            if self.writer is not None:
                self.writer.close()


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


# ------------------------------------------------------------------------------ checkpoints

def _rng_state() -> dict:
    """Global RNG states, weights_only-loadable (plain lists and tensors)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "python": random.getstate(),
             "sampler": {"scheme": "SeedSequence(seed, step, rank, stream)",
                         "streams": ["order", "positive", "dropout", "loss", "init"]}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(path: Path, trainer: Trainer, profile: Profile, step: int, seed: int,
                     backbone) -> None:
    state = {"format": CHECKPOINT_FORMAT, "profile": dataclasses.asdict(profile), "step": step,
             "seed": seed, "backbone": profile.backbone, "backbone_dim": backbone.dim,
             "patch_size": backbone.patch_size, "code_dim": profile.dim,
             "n_classes": profile.n_classes, "extra_clusters": profile.extra_clusters,
             "backbone_weights_identity": profile_weights_identity(profile),
             **trainer.state_dict(), "rng": _rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read_checkpoint(path: Path, device="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise DepthGError(f"checkpoint {path} does not exist; train one with "
                          "`python -m depthg_lib.train --profile <profile>`")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is one clear error
        raise DepthGError(f"cannot read checkpoint {path} ({type(err).__name__}: {err}); "
                          "delete it and train again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise DepthGError(f"{path} is not a DepthG checkpoint (format {found!r}, expected "
                          f"{CHECKPOINT_FORMAT!r})")
    return state


def _check_compatible(state: dict, profile: Profile, path: Path) -> None:
    want = {"backbone": profile.backbone, "code_dim": profile.dim,
            "n_classes": profile.n_classes,
            "extra_clusters": profile.extra_clusters}
    got = {k: state.get(k, 0 if k == "extra_clusters" else None) for k in want}
    if got != want:
        diff = ", ".join(f"{k} {got[k]!r} vs {want[k]!r}" for k in want if got[k] != want[k])
        raise DepthGError(
            f"checkpoint {path} was trained for profile {state['profile'].get('name')!r} and "
            f"does not fit profile {profile.name!r} ({diff}); evaluate it with its own profile "
            f"or train one: python -m depthg_lib.train --profile {_profile_arg(profile)}")


@dataclass
class TrainedModel:
    """A trained head with its probes (eval mode), and what it was trained with."""

    head: nn.Module
    cluster_probe: nn.Module
    linear_probe: nn.Module
    backbone_name: str
    meta: dict
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _backbone: nn.Module | None = None

    @property
    def profile(self) -> dict:
        return self.meta["profile"]

    def backbone(self) -> nn.Module:
        """The frozen backbone the head was trained on (loaded on first use)."""
        if self._backbone is None:
            from .models import load_backbone

            self._backbone = load_backbone(self.backbone_name,
                                           weights=self.profile.get("backbone_weights") or None,
                                           device=self.device)
        return self._backbone

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """Codes (B, code_dim, H/p, W/p) of images (B,3,H,W): uint8 0..255 or float [0,1]."""
        images = images.to(self.device)
        x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
        return self.head(self.backbone()(x)).float()


def load_checkpoint(path: str | os.PathLike, profile: Profile | str | None = None,
                    device: str | torch.device = "cpu") -> TrainedModel:
    """Load a training checkpoint; with `profile`, refuse one made for another backbone/size."""
    path = Path(path)
    device = torch.device(device)
    state = _read_checkpoint(path, device)
    if profile is not None:
        _check_compatible(state, load_profile(profile), path)
    saved = state["profile"]
    trained_on = state.get("backbone_weights_identity")
    if trained_on and not saved.get("backbone_weights"):  # the default weights of the name
        now = weights_identity(state["backbone"], None)
        if now and now != trained_on:
            raise DepthGError(
                f"checkpoint {path} was trained on other {state['backbone']} weights "
                f"({trained_on}) than the ones installed now ({now}); train it again: "
                f"python -m depthg_lib.train --profile {saved.get('name', 'PROFILE')} --force")
    model = DepthGModel(state["backbone_dim"], state["code_dim"], state["n_classes"],
                        state.get("extra_clusters", 0), saved.get("dropout", True),
                        saved.get("nonlinear", True))
    model.head.load_state_dict(state["head"])
    model.cluster_probe.load_state_dict(state["cluster_probe"])
    model.linear_probe.load_state_dict(state["linear_probe"])
    model.to(device).eval()
    meta = {k: v for k, v in state.items()
            if k not in ("head", "cluster_probe", "linear_probe", "optimizers", "rng")}
    meta["path"] = str(path)
    return TrainedModel(model.head, model.cluster_probe, model.linear_probe, state["backbone"],
                        meta, device)


# ------------------------------------------------------------------------------ training

def _distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group) — torchrun sets WORLD_SIZE."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _load_backbone(profile: Profile, device: torch.device):
    from .models import load_backbone

    backbone = load_backbone(profile.backbone, weights=profile.backbone_weights or None,
                             device=device)
    backbone.eval()
    for prm in backbone.parameters():
        prm.requires_grad_(False)
    if device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)
    return backbone


def _settings(profile: Profile, seed: int) -> dict:
    kept = {k: v for k, v in dataclasses.asdict(profile).items() if k not in _BOOKKEEPING}
    return {**kept, "seed": seed, "backbone_weights_identity": profile_weights_identity(profile)}


def _cache_settings(profile: Profile, data: TrainData, backbone) -> dict:
    return {"version": featcache.CACHE_VERSION, "crops": data.key, "backbone": profile.backbone,
            "weights": profile_weights_identity(profile),
            "dim": backbone.dim, "patch_size": backbone.patch_size, "res": profile.res,
            "fidelity": profile.fidelity, "n_train": len(data.train),
            "n_val": len(data.val) if data.val is not None else 0}


def _prepare_caches(profile, data, backbone, device, rank, world, progress):
    """Build (rank 0) or open the frozen-feature cache of the train and val crops."""
    folder = Path(data.cache_dir)
    settings = _cache_settings(profile, data, backbone)
    grid = (profile.res // backbone.patch_size,) * 2
    splits = [("train", data.train)] + ([("val", data.val)] if data.val is not None else [])
    if rank == 0:
        total = sum(featcache.cache_bytes(len(s), backbone.dim, grid, profile.res)
                    for _, s in splits)
        featcache.check_budget(total, profile.feature_cache_gb, folder)
        for name, source in splits:
            featcache.build_cache(source, name, folder, backbone, res=profile.res,
                                  fidelity=profile.fidelity, settings=settings, device=device,
                                  budget_gb=profile.feature_cache_gb, progress=progress,
                                  reserved=0 if name == "train" else featcache.cache_bytes(
                                      len(data.train), backbone.dim, grid, profile.res))
    _barrier(world)
    caches = {name: featcache.open_cache(folder, name, settings) for name, _ in splits}
    if any(c is None for c in caches.values()):
        raise DepthGError(f"the frozen-feature cache in {folder} is incomplete; delete the "
                          "folder and run training again")
    return caches


def _to_device(batch: dict, device: torch.device) -> dict:
    nb = device.type == "cuda"
    return {k: v.to(device, non_blocking=nb) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _flush(pending: list[dict], world: int) -> list[dict]:
    """Turn pending step records into plain rows with one device sync (and one all-reduce)."""
    values = torch.stack([r["values"] for r in pending])
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(values)
        values = values / world
    rows = []
    for rec, vals in zip(pending, values.cpu().tolist()):
        row = {k: rec[k] for k in ("step", "samples", "weight_depth", "shift_depth")}
        row.update(zip(STEP_VALUES, vals))
        rows.append(row)
    return rows


def _first_bad(rows: list[dict]) -> tuple[int, str, float] | None:
    for row in rows:
        for k in STEP_VALUES:
            if not math.isfinite(row[k]):
                return row["step"], k, row[k]
    return None


def train(profile: Profile | str, out_dir: str | os.PathLike | None = None,
          device: str | torch.device = "auto", resume: bool = False, seed: int | None = None,
          steps: int | None = None, progress: bool = True, *, force: bool = False,
          data: TrainData | None = None, log_every: int | None = None) -> Path:
    """Train the head of `profile` and return its final checkpoint (SPEC §8).

    `out_dir` defaults to `runs/<profile>/train`; `steps` and `seed` override the profile's.
    A finished run with the same settings is not repeated; an unfinished one needs `resume`
    (continue from `checkpoints/last.pt`) or `force` (start over). `data` replaces the
    profile's crops and kNN table (toy runs, tests). `log_every` is how often step numbers
    are synchronised and written (default: every step on CPU, every 25 on CUDA); the CSV
    holds every step either way.
    """
    profile = load_profile(profile)
    seed = profile.seed if seed is None else int(seed)
    total_steps = profile.steps if steps is None else int(steps)
    if total_steps < 1:
        raise DepthGError(f"steps must be ≥ 1, got {total_steps}")
    device = resolve_device(device)
    rank, world, own_group = _distributed(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    log_every = log_every or (25 if device.type == "cuda" else 1)
    out = Path(out_dir) if out_dir is not None else profile.paths.train_dir
    ckpt_dir = out / "checkpoints"
    last, final = ckpt_dir / "last.pt", ckpt_dir / "final.pt"
    try:
        done = _check_previous_run(out, last, final, profile, seed, total_steps, resume, force,
                                   rank, world)
        if done is not None:
            return done
        data = data if data is not None else open_train_data(profile)
        if data.cache_dir is None:
            data = dataclasses.replace(data, cache_dir=out / "features")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return _train(profile, data, out, last, final, device, seed, total_steps, resume,
                          progress and rank == 0, rank, world, log_every)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _check_previous_run(out, last, final, profile, seed, total_steps, resume, force, rank,
                        world) -> Path | None:
    """Refuse to mix runs: returns the final checkpoint if this exact run is already done."""
    if rank == 0:
        if force:
            for old in (last, final, out / "log.csv"):
                old.unlink(missing_ok=True)
            shutil.rmtree(out / "tb", ignore_errors=True)
        check_stage_settings(out, "train", _settings(profile, seed), force=force)
    _barrier(world)
    if resume:
        return None
    arg = _profile_arg(profile)
    if final.exists():
        step = _read_checkpoint(final)["step"]
        if step == total_steps:
            return final
        raise DepthGError(f"{out} holds a finished run of {step} steps, not {total_steps}; "
                          f"continue it with `python -m depthg_lib.train --profile {arg} "
                          f"--resume --steps {total_steps}` or start over with --force")
    if last.exists():
        step = _read_checkpoint(last)["step"]
        raise DepthGError(f"{out} holds an unfinished run (checkpoint at step {step}); continue "
                          f"it with `python -m depthg_lib.train --profile {arg} --resume` or "
                          "start over with --force")
    return None


def _train(profile, data, out, last, final, device, seed, total_steps, resume, progress, rank,
           world, log_every) -> Path:
    from tqdm.auto import tqdm

    backbone = _load_backbone(profile, device)
    grid = profile.res // backbone.patch_size
    if profile.samples > grid:
        raise DepthGError(f"profile {profile.name}: the sample grid S = {profile.samples} is "
                          f"larger than the {grid}×{grid} feature grid ({profile.res} px / patch "
                          f"{backbone.patch_size}); lower `samples` or raise `res`")
    trainer = Trainer(profile, backbone.dim, device, seed, rank, world)
    start = 0
    if resume and last.exists():
        state = _read_checkpoint(last, device)
        _check_compatible(state, profile, last)
        trainer.load_state_dict(state)
        _set_rng_state({**state["rng"], "torch": state["rng"]["torch"].cpu()})
        start = int(state["step"])
        if start > total_steps:
            raise DepthGError(f"checkpoint {last} is at step {start}, beyond --steps "
                              f"{total_steps}; pass a larger --steps")
    if start == total_steps:  # nothing left to do: the last checkpoint is the final one
        if rank == 0:
            with atomic_path(final) as tmp:
                shutil.copyfile(last, tmp)
        return final

    caches = (_prepare_caches(profile, data, backbone, device, rank, world, progress)
              if profile.precompute_features else {})
    sampler = StepSampler(data.knn, profile.knn_k, profile.batch_size, seed, start, total_steps,
                          rank, world)
    dataset = (_CachedBatches(caches["train"]) if "train" in caches
               else _CropBatches(data.train, profile.res, profile.fidelity))
    workers = profile.num_workers
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers else None)
    validate = None
    if rank == 0 and data.val is not None:
        validate = _Validation(profile, data.val, caches.get("val"), backbone, device)

    log = RunLog(out, start, enabled=rank == 0)
    bar = tqdm(total=total_steps, initial=start, desc=f"train {profile.name}",
               disable=not progress, dynamic_ncols=True)
    pending: list[dict] = []
    last_saved = start if start else None
    try:
        for batch in loader:
            step = batch["step"]
            batch = _to_device(batch, device)
            if "feats" in batch:
                feats, feats_pos = batch["feats"].float(), batch["feats_pos"].float()
            else:
                both = featcache.featurize(backbone, torch.cat([batch["image"],
                                                                batch["image_pos"]]))
                feats, feats_pos = both.float().chunk(2)
            label = batch["label"].long()
            pending.append(trainer.step(step, feats, feats_pos, label, batch["depth"],
                                        batch["depth_pos"]))
            done = step + 1
            # the same on every rank: each flush is a collective under DDP
            is_val = data.val is not None and (done % profile.val_every == 0
                                               or done == total_steps)
            is_ckpt = done % profile.checkpoint_every == 0 or done == total_steps
            if len(pending) >= log_every or is_val or is_ckpt:
                rows = _flush(pending, world)
                pending = []
                bad = _first_bad(rows)
                if bad is not None:
                    log.write([r for r in rows if r["step"] <= bad[0]])
                    kept = (f"the last good checkpoint {last} (step {last_saved}) is kept"
                            if last_saved is not None else "no checkpoint had been written yet")
                    raise DepthGError(
                        f"training diverged at step {bad[0]}: loss term {bad[1]!r} is {bad[2]}; "
                        f"{kept}. Lower the learning rate or check the inputs, then resume "
                        f"with --resume or start over with --force")
                if is_val and validate is not None:
                    rows[-1].update(validate(trainer.model))
                log.write(rows)
                bar.set_postfix(loss=f"{rows[-1]['total']:.4f}", S=rows[-1]["samples"])
            if is_ckpt:
                if rank == 0:
                    _save_checkpoint(last, trainer, profile, done, seed, backbone)
                last_saved = done
            bar.update(1)
    finally:
        bar.close()
        log.close()
    if rank == 0:
        with atomic_path(final) as tmp:
            shutil.copyfile(last, tmp)
    _barrier(world)
    return final


# ------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.train",
                                     description="Train the DepthG head (chapter 04).")
    parser.add_argument("--profile", required=True, help="profile name or YAML file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/checkpoints/last.pt")
    parser.add_argument("--force", action="store_true", help="discard an earlier run in <out>")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, default=None, help="total steps (profile: steps)")
    parser.add_argument("--out", default=None, help="output folder (runs/<profile>/train)")
    parser.add_argument("--seed", type=int, default=None, help="seed (profile: seed)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        path = train(args.profile, out_dir=args.out, device=args.device, resume=args.resume,
                     seed=args.seed, steps=args.steps, progress=not args.no_progress,
                     force=args.force)
    except KeyboardInterrupt:
        given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--force"]
        again = " ".join(["python -m depthg_lib.train", *given])
        again += "" if args.resume else " --resume"
        print(f"interrupted: the last checkpoint written is kept; continue with `{again}`",
              file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(path, file=sys.stdout)
    return 0


if __name__ == "__main__":
    run_cli(main)
