"""What each rehearsal stage does, in the child process that `runner.run_stage` measures:

    python -m depthg_lib.rehearse.stages STAGE OUT [--force]

Each stage runs the library's own stage on the stand-ins at scale F and returns what it saw:
counts, sizes, the seconds of the parts it timed, and `what ran` — which parts are the real
code at this scale ("full") and which compute ran on a measured sample only ("sample"). Each
imports the library's stage inside itself: a child's peak memory counts only what it ran.
`--force` (the rehearsal's): the library's stage redoes its outputs instead of resuming, so
that a re-measured stage is measured doing its work.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from ..config import Profile, load_profile
from ..data.readers import reader_for_profile
from ..errors import DepthGError, run_cli
from ..io import load_json, save_json
from .standin import unit_rows, vit_forward_flops, vit_shape, write_backbone_standin, write_standin
from .timing import BlockLimiter, Clock, stopwatch, timed


@dataclass
class Context:
    """One stage's view of the rehearsal: its profile (the paper profile with the stand-in
    data root and weights) and the rehearsal's settings."""

    profile: Profile
    scale: float
    sample: int
    steps: int
    knn_blocks: int
    force: bool = False  # redo the library stage's outputs instead of resuming


def stage_weights(ctx: Context) -> dict:
    info = write_backbone_standin(ctx.profile.backbone, Path(ctx.profile.backbone_weights))
    return {**info, "what ran": {"full": "random weights of the real architecture, saved"}}


def stage_data(ctx: Context) -> dict:
    clock = Clock()
    with stopwatch(clock, "write stand-ins") as watch:
        written = write_standin(ctx.profile.dataset, ctx.profile.paths.dataset_dir, ctx.scale,
                                progress=False)
        watch.items = sum(written["images"].values())
    with stopwatch(clock, "data check"):
        report = reader_for_profile(ctx.profile).check()  # what fetch runs after extracting
    if not report.usable:
        raise RuntimeError(f"the stand-in dataset fails the data check:\n{report}")
    return {**written, "clock": clock.summary(),
            "what ran": {"full": "stand-in files in the real tree, formats and sizes; the data "
                                 "check the fetch runs after extraction"}}


def stage_depth(ctx: Context) -> dict:
    """The real stage on every image with the embedded depth net (the rehearsal profile's
    depth backend: ZoeDepth's weights are not on this machine, and its cost is projected)."""
    from ..depth import run_depth_stage

    clock = Clock()
    reader = reader_for_profile(ctx.profile)
    n = sum(len(reader.names(s)) for s in reader.splits)
    with stopwatch(clock, "depth stage (embedded net)", n):
        run_depth_stage(ctx.profile, progress=False, device="cpu", force=ctx.force)
    return {"images": n, "clock": clock.summary(),
            "what ran": {"full": "the real stage on every image at its real size, with the "
                                 "embedded depth net instead of ZoeDepth"}}


def stage_crop(ctx: Context) -> dict:
    from ..crop import CropReader, run_crop_stage

    clock = Clock()
    with stopwatch(clock, "five-crop"):
        run_crop_stage(ctx.profile, split="all", progress=False, force=ctx.force)
    crops = {s: len(CropReader.from_profile(ctx.profile, s)) for s in ("train", "val")}
    return {"crops": crops, "clock": clock.summary(), "what ran": {"full": "the real stage"}}


def _subset(reader, n: int):
    """The first `n` crops of a `CropReader`, as `featurise_crops` reads them."""
    class Subset:
        def __len__(self):
            return n

        def paths(self, i):
            return reader.paths(i)
    return Subset()


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(need: int, p: Profile) -> None:
    """Refuse to start a top-k whose score block and its partitioned copy would not fit."""
    free = available_memory()
    if free is not None and need > 0.8 * free:
        raise DepthGError(f"the top-k of {p.name} needs about {need / 1e9:.1f} GB (a block of "
                          f"knn_block = {p.knn_block} rows of scores, its partitioned copy and "
                          f"the features) but {free / 1e9:.1f} GB are available; lower "
                          "knn_block in a copy of the profile, or run on a larger machine")


def stage_knn(ctx: Context) -> dict:
    """Features: the real backbone on a sample of crops. Mining: the real stage at full N
    with stand-in unit features of the real width; the first `knn_blocks` blocks of the top-k
    at full size, the rows after them filled with random ids."""
    from .. import knn
    from ..crop import CropReader
    from ..models import load_backbone

    p, clock = ctx.profile, Clock()
    reader = CropReader.from_profile(p, "train")
    n = len(reader)
    backbone = load_backbone(p.backbone, p.backbone_weights, device="cpu")
    width = vit_shape(p.backbone)[0]
    m = min(ctx.sample, n)
    if m:
        with stopwatch(clock, "features (real backbone)", m):
            knn.featurise_crops(_subset(reader, m), backbone, p.knn_res, p.fidelity,
                                torch.device("cpu"), batch=max(1, m), workers=1, progress=False)
    del backbone
    check_memory(min(p.knn_block, n) * n * 4 * 2 + n * width * 4, p)
    limiter = BlockLimiter(ctx.knn_blocks, clock)
    real_topk = knn.topk_neighbours

    def topk(feats, k, block=4096, progress=False):
        out = real_topk(feats, k, block=block, progress=True)
        done = min(len(feats), limiter.ran * block)
        if done < len(feats):  # rows never mined: random ids, column 0 the crop itself
            rng = np.random.default_rng(0)
            out[done:, 0] = np.arange(done, len(feats))
            out[done:, 1:] = rng.integers(0, len(feats), size=(len(feats) - done, k))
        return out

    def standin_features(reader, *_args, **_kwargs):
        return torch.from_numpy(unit_rows(len(reader), width))

    with (mock.patch.multiple(knn, topk_neighbours=topk, tqdm=limiter,
                              featurise_crops=standin_features),
          stopwatch(clock, "stage (stand-in features)")):
        knn.run_knn_stage(p, split="train", progress=False, device="cpu", force=ctx.force)
    k_store = min(p.knn_store, n)
    return {"crops": n, "dim": width, "K": k_store, "block": p.knn_block,
            "blocks run": limiter.ran, "blocks": limiter.total,
            "flops per crop": vit_forward_flops(p.backbone, p.knn_res),
            "bytes": {"features": n * width * 4, "score block": min(p.knn_block, n) * n * 4,
                      "table": n * k_store * 8},
            "clock": clock.summary(),
            "what ran": {"full": "the real stage at full N (crops, record, N×K table, "
                                 f"{limiter.ran} of {limiter.total} top-k blocks of the real "
                                 "size) on stand-in unit features of the real width",
                         "sample": f"backbone features of {m} crops at {p.knn_res} px"}}


def stage_train(ctx: Context) -> dict:
    """The real trainer for `steps` steps at the profile's batch; forwards, head steps,
    validation and checkpoints timed apart."""
    from .. import features
    from ..train import loop, trainer, validation

    clock = Clock()

    def forward_label(c):
        return "validation forward" if "validation" in c.inside else "train forward"

    with (timed(features, "featurize", clock, forward_label, count=lambda a: len(a[1])),
          timed(validation.Validation, "__call__", clock, "validation", count=lambda a: 1,
                mark="validation"),
          timed(trainer.Trainer, "step", clock, "head step", count=lambda a: 1),
          timed(loop, "save_checkpoint", clock, "checkpoint", count=lambda a: 1)):
        with stopwatch(clock, "train()"):
            final = loop.train(ctx.profile, steps=ctx.steps, device="cpu", progress=False,
                               force=True)
    p = ctx.profile
    return {"steps run": ctx.steps, "batch": p.batch_size, "checkpoint": str(final),
            "checkpoint bytes": Path(final).stat().st_size,
            "flops per crop": vit_forward_flops(p.backbone, p.res),
            "clock": clock.summary(),
            "what ran": {"full": "crops, kNN table and checkpoints of full N; the real trainer",
                         "sample": f"{ctx.steps} step(s) of batch {p.batch_size}; validation "
                                   f"on {p.val_images} crop(s)"}}


def stage_evaluate(ctx: Context) -> dict:
    from .. import evaluate as ev

    clock = Clock()
    with timed(ev, "flip_averaged_codes", clock, "forward + flip", count=lambda a: len(a[2])):
        with stopwatch(clock, "evaluate()"):
            ev.evaluate(ctx.profile, device="cpu", max_images=max(1, ctx.sample),
                        progress=False, force=True)
    return {"images": max(1, ctx.sample), "clock": clock.summary(),
            "flops per image": 2 * vit_forward_flops(ctx.profile.backbone, ctx.profile.eval_res),
            "what ran": {"sample": f"the real evaluation on {max(1, ctx.sample)} val image(s) "
                                   f"at {ctx.profile.eval_res} px (no CRF)"}}


STAGES = {"weights": stage_weights, "data": stage_data, "depth": stage_depth,
          "crop": stage_crop, "knn": stage_knn, "train": stage_train,
          "evaluate": stage_evaluate}


def main(argv: list[str] | None = None) -> int:
    stage, out, *flags = sys.argv[1:] if argv is None else argv
    out = Path(out)
    settings = load_json(out / "REHEARSAL.json")["settings"]
    ctx = Context(profile=load_profile(out / "profile" / f"{settings['profile']}.yaml"),
                  scale=settings["scale"], sample=settings["sample"], steps=settings["steps"],
                  knn_blocks=settings["knn_blocks"], force="--force" in flags)
    save_json(out / "stages" / f"{stage}.detail.json", STAGES[stage](ctx))
    return 0


if __name__ == "__main__":
    run_cli(main)
