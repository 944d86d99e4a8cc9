"""`python -m depthg_lib.rehearse.stages STAGE OUT [--force]`, the child `runner` measures: the
library's stage on the stand-ins under timers, returning counts, sizes, seconds and `what ran`
(the real code at this scale, "full", or compute timed on a sample). Each stage imports the
library's inside itself: a child's peak memory counts only what it ran."""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import torch

from ..config import Profile, load_profile
from ..data.readers import reader_for_profile
from ..errors import DepthGError, run_cli
from ..io import load_json, save_json
from .standin import unit_rows, vit_forward_flops, vit_shape, write_backbone_standin, write_standin


class Clock(defaultdict):
    """label → wall and CPU seconds, items and calls, summed (projections use the CPU seconds: a
    low-priority process's wall time measures the others); `inside`: the labels being timed."""

    def __init__(self):
        super().__init__(Counter)
        self.inside: set[str] = set()

    @contextlib.contextmanager
    def watch(self, label: str, items: int = 1):
        """Add the block's seconds for `w.items` items (`with clock.watch(label) as w:`)."""
        w = SimpleNamespace(items=items)
        wall, cpu = time.perf_counter(), time.process_time()
        self.inside.add(label)
        try:
            yield w
        finally:
            self.inside.discard(label)
            self[label].update(seconds=time.perf_counter() - wall, items=w.items, calls=1,
                               cpu_seconds=time.process_time() - cpu)

    def per_item(self, label: str) -> float | None:  # CPU seconds
        e = self.get(label)
        return e["cpu_seconds"] / e["items"] if e and e["items"] else None

    def summary(self) -> dict:
        return {k: {"seconds": round(e["seconds"], 4), "cpu_seconds": round(e["cpu_seconds"], 4),
                    "items": e["items"], "calls": e["calls"], "per_item": self.per_item(k)}
                for k, e in self.items()}


def timed(owner, attr: str, clock: Clock, label, count=lambda args: 1):
    """Patch `owner.attr`, for a `with` block, to add its time to `clock` under `label` (or
    `label(clock)`: validation apart from training) for `count(args)` items."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        with clock.watch(label(clock) if callable(label) else label, count(args)):
            return original(*args, **kwargs)

    return mock.patch.object(owner, attr, wrapper)


class BlockLimiter:
    """Stands in for `tqdm` inside `knn.topk_neighbours`: yields the first `limit` of its `total`
    block starts, timing each (computed for real at full N); rows past `ran` blocks are unmined."""

    def __init__(self, limit: int, clock: Clock):
        self.limit, self.clock = limit, clock
        self.ran = self.total = 0

    def __call__(self, iterable, **_kwargs):
        starts = list(iterable)
        self.total = len(starts)
        for start in starts[: self.limit]:
            with self.clock.watch("top-k block"):
                yield start  # the caller computes the block before asking for the next
            self.ran += 1


def stage_weights(ctx: SimpleNamespace) -> dict:
    info = write_backbone_standin(ctx.profile.backbone, Path(ctx.profile.backbone_weights))
    return {**info, "what ran": {"full": "random weights of the real architecture, saved"}}


def stage_data(ctx: SimpleNamespace) -> dict:
    with ctx.clock.watch("write stand-ins") as w:
        written = write_standin(ctx.profile.dataset, ctx.profile.paths.dataset_dir, ctx.scale)
        w.items = sum(written["images"].values())
    with ctx.clock.watch("data check"):
        report = reader_for_profile(ctx.profile).check()  # what fetch runs after extracting
    if not report.usable:
        raise RuntimeError(f"the stand-in dataset fails the data check:\n{report}")
    return {**written, "what ran": {"full": "stand-in files in the real tree, formats and sizes; "
                                            "the data check the fetch runs after extraction"}}


def stage_depth(ctx: SimpleNamespace) -> dict:
    """The real stage on every image with the embedded depth net (ZoeDepth's is projected)."""
    from ..depth import run_depth_stage

    reader = reader_for_profile(ctx.profile)
    n = sum(len(reader.names(s)) for s in reader.splits)
    with ctx.clock.watch("depth stage (embedded net)", n):
        run_depth_stage(ctx.profile, progress=False, device="cpu", force=ctx.force)
    return {"images": n, "what ran": {"full": "the real stage on every image at its real size, "
                                              "with the embedded depth net instead of ZoeDepth"}}


def stage_crop(ctx: SimpleNamespace) -> dict:
    from ..crop import CropReader, run_crop_stage

    with ctx.clock.watch("five-crop"):
        run_crop_stage(ctx.profile, split="all", progress=False, force=ctx.force)
    crops = {s: len(CropReader.from_profile(ctx.profile, s)) for s in ("train", "val")}
    return {"crops": crops, "what ran": {"full": "the real stage"}}


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        found = re.search(r"^MemAvailable:\s+(\d+)", fh.read(), re.M)
        return int(found[1]) * 1024 if found else None
    return None


def check_memory(need: int, p: Profile) -> None:
    """Refuse to start a top-k whose score block and its partitioned copy would not fit."""
    free = available_memory()
    if free is not None and need > 0.8 * free:
        raise DepthGError(f"the top-k of {p.name} needs about {need / 1e9:.1f} GB (a block of "
                          f"knn_block = {p.knn_block} rows of scores, its partitioned copy and "
                          f"the features) but {free / 1e9:.1f} GB are available; lower "
                          "knn_block in a copy of the profile, or run on a larger machine")


class _First:
    """The first `n` crops of a `CropReader`, as `featurise_crops` reads them."""

    def __init__(self, reader, n: int):
        self.paths, self.n = reader.paths, n

    def __len__(self) -> int:
        return self.n


def stage_knn(ctx: SimpleNamespace) -> dict:
    """Features: the real backbone on a sample of crops. Mining: the real stage at full N on
    stand-in unit features; `knn_blocks` top-k blocks for real, the rows after them random ids."""
    from .. import knn
    from ..crop import CropReader
    from ..models import load_backbone

    p, clock = ctx.profile, ctx.clock
    reader = CropReader.from_profile(p, "train")
    n, width, m = len(reader), vit_shape(p.backbone)[0], min(ctx.sample, len(reader))
    if m:
        backbone = load_backbone(p.backbone, p.backbone_weights, device="cpu")
        with clock.watch("features (real backbone)", m):
            knn.featurise_crops(_First(reader, m), backbone, p.knn_res, p.fidelity, "cpu",
                                batch=m, workers=1, progress=False)
        del backbone
    check_memory(min(p.knn_block, n) * n * 4 * 2 + n * width * 4, p)
    limiter, real_topk = BlockLimiter(ctx.knn_blocks, clock), knn.topk_neighbours

    def topk(feats, k, block=4096, progress=False):
        out = real_topk(feats, k, block=block, progress=True)
        done = min(len(feats), limiter.ran * block)
        if done < len(feats):  # rows never mined: random ids, column 0 the crop itself
            out[done:, 0] = np.arange(done, len(feats))
            out[done:, 1:] = np.random.default_rng(0).integers(0, len(feats),
                                                               size=(len(feats) - done, k))
        return out

    def standin_features(reader, *_args, **_kwargs):
        return torch.from_numpy(unit_rows(len(reader), width))

    with (mock.patch.multiple(knn, topk_neighbours=topk, tqdm=limiter,
                              featurise_crops=standin_features),
          clock.watch("stage (stand-in features)")):
        knn.run_knn_stage(p, split="train", progress=False, device="cpu", force=ctx.force)
    return {"crops": n, "dim": width, "K": min(p.knn_store, n), "block": p.knn_block,
            "blocks run": limiter.ran, "blocks": limiter.total,
            "flops per crop": vit_forward_flops(p.backbone, p.knn_res),
            "what ran": {"full": "the real stage at full N (crops, record, N×K table, "
                                 f"{limiter.ran} of {limiter.total} top-k blocks of the real "
                                 "size) on stand-in unit features of the real width",
                         "sample": f"backbone features of {m} crops at {p.knn_res} px"}}


def stage_train(ctx: SimpleNamespace) -> dict:
    """The real trainer for `steps` steps; forwards, head steps, validation, checkpoints timed."""
    from .. import checkpoint, features
    from ..train import loop, trainer, validation

    clock, p = ctx.clock, ctx.profile

    def forward_label(c):
        return "validation forward" if "validation" in c.inside else "train forward"

    with (timed(features, "featurize", clock, forward_label, count=lambda a: len(a[1])),
          timed(validation.Validation, "__call__", clock, "validation"),
          timed(trainer.Trainer, "step", clock, "head step"),
          timed(checkpoint, "save_checkpoint", clock, "checkpoint"),
          clock.watch("train()")):
        final = loop.train(p, steps=ctx.steps, device="cpu", progress=False, force=True)
    return {"steps run": ctx.steps, "batch": p.batch_size, "checkpoint": str(final),
            "checkpoint bytes": Path(final).stat().st_size,
            "flops per crop": vit_forward_flops(p.backbone, p.res),
            "what ran": {"full": "crops, kNN table and checkpoints of full N; the real trainer",
                         "sample": f"{ctx.steps} step(s) of batch {p.batch_size}; validation "
                                   f"on {p.val_images} crop(s)"}}


def stage_evaluate(ctx: SimpleNamespace) -> dict:
    from .. import evaluate as ev

    clock, p, n = ctx.clock, ctx.profile, max(1, ctx.sample)
    with (timed(ev, "flip_averaged_codes", clock, "forward + flip", count=lambda a: len(a[2])),
          clock.watch("evaluate()")):
        ev.evaluate(p, device="cpu", max_images=n, progress=False, force=True)
    return {"images": n, "flops per image": 2 * vit_forward_flops(p.backbone, p.eval_res),
            "what ran": {"sample": f"the real evaluation on {n} val image(s) at {p.eval_res} px "
                                   "(no CRF)"}}


STAGES = {"weights": stage_weights, "data": stage_data, "depth": stage_depth,
          "crop": stage_crop, "knn": stage_knn, "train": stage_train,
          "evaluate": stage_evaluate}


def main(argv: list[str] | None = None) -> int:
    """A stage's `ctx`: the rehearsal's settings, its stand-in profile, `force` and a Clock."""
    stage, out, *flags = sys.argv[1:] if argv is None else argv
    ctx = SimpleNamespace(**load_json(Path(out) / "REHEARSAL.json")["settings"], clock=Clock(),
                          force="--force" in flags)
    ctx.profile = load_profile(Path(out) / "profile" / f"{ctx.profile}.yaml")  # name → profile
    save_json(Path(out) / "stages" / f"{stage}.detail.json",
              {**STAGES[stage](ctx), "clock": ctx.clock.summary()})
    return 0


if __name__ == "__main__":
    run_cli(main)
