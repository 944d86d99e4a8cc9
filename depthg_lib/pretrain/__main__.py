"""CLI: `python -m depthg_lib.pretrain {data,vit,depth,export} ...` (see the package docstring).

    python -m depthg_lib.pretrain data                       # render the pretraining scenes
    python -m depthg_lib.pretrain vit --out runs/pretrain/vit [--resume] [--export]
    python -m depthg_lib.pretrain depth --out runs/pretrain/depth [--resume] [--export]
    python -m depthg_lib.pretrain export vit --out runs/pretrain/vit
    python -m depthg_lib.pretrain pairs --out runs/pretrain/pairs --n 4000   # view pairs
    python -m depthg_lib.pretrain vit --objective multiview --pool runs/pretrain/pairs \
        --out runs/pretrain/vit_mv [--resume] [--max-minutes 90]
    python -m depthg_lib.pretrain vit --objective supervised --out DIR   # reference only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from ..errors import run_cli
from .common import (
    DEFAULT_DATA_DIR,
    PRETRAIN_DATA_SEED,
    command_line,
    data_record,
    ensure_synthscenes,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m depthg_lib.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", default=str(DEFAULT_DATA_DIR),
                       help="SynthScenes folder for pretraining (rendered if missing)")
        q.add_argument("--n-train", type=int, default=None, help="scenes to render / use")
        q.add_argument("--size", type=int, default=128, help="scene size in pixels")
        q.add_argument("--data-seed", type=int, default=PRETRAIN_DATA_SEED,
                       help="SynthScenes seed (never the evaluation seed 2024)")
        q.add_argument("--threads", type=int, default=1, help="torch CPU threads")

    q = sub.add_parser("data", help="render the pretraining SynthScenes")
    data_args(q)
    q = sub.add_parser("pairs", help="render a pool of view pairs (multi-view objective)")
    q.add_argument("--out", required=True, help="pool folder (outside the repository)")
    q.add_argument("--n", type=int, default=4000, help="view pairs")
    q.add_argument("--size", type=int, default=128, help="render size in pixels")
    q.add_argument("--seed", type=int, default=None, help="pair seed (default: PAIR_DATA_SEED)")
    q.add_argument("--workers", type=int, default=1, help="rendering processes")
    q.add_argument("--check", action="store_true",
                   help="print match statistics of the pair geometry (reads labels; a check "
                        "only, nothing is stored)")
    for kind in ("vit", "depth"):
        q = sub.add_parser(kind, help=f"train the embedded {kind}")
        q.add_argument("--out", required=True, help="run folder (checkpoint, log.csv)")
        q.add_argument("--resume", action="store_true", help="continue the run in --out")
        q.add_argument("--steps", type=int, default=None)
        q.add_argument("--batch", type=int, default=None)
        q.add_argument("--seed", type=int, default=0, help="training seed")
        if kind == "vit":
            from .vit import OBJECTIVE_PRESETS

            q.add_argument("--objective", choices=sorted(OBJECTIVE_PRESETS),
                           default="vicregl-colour",
                           help="self-supervised objective (see depthg_lib/pretrain/vit.py; "
                                "'supervised' is a reference that reads labels, never shipped)")
            q.add_argument("--pool", default=None, help="view-pair pool (multiview objectives)")
            q.add_argument("--input-size", type=int, default=None, help="view size in pixels")
            q.add_argument("--max-matches", type=int, default=None,
                           help="matched patches per step in the multi-view loss (subsampled)")
            q.add_argument("--lr", type=float, default=None)
            q.add_argument("--vit-dim", type=int, default=None,
                           help="ViT width (not the shipped 128: the library cannot load it)")
            q.add_argument("--vit-depth", type=int, default=None)
            q.add_argument("--vit-heads", type=int, default=None)
            q.add_argument("--device", default="cpu", help="cpu | cuda | auto")
            q.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
            q.add_argument("--max-minutes", type=float, default=None,
                           help="stop after this long (checkpointed; continue with --resume)")
            q.add_argument("--log-every", type=int, default=None)
            q.add_argument("--checkpoint-minutes", type=float, default=None)
        q.add_argument("--export", action="store_true",
                       help="when finished, export the weights into depthg_lib/weights/")
        q.add_argument("--weights-dir", default=None, help="export target (default: the library's)")
        data_args(q)
    q = sub.add_parser("export", help="write a finished run's fp16 safetensors + manifest entry")
    q.add_argument("kind", choices=["vit", "depth"])
    q.add_argument("--out", required=True, help="run folder")
    q.add_argument("--weights-dir", default=None)
    q.add_argument("--allow-partial", action="store_true",
                   help="export a run that has not reached its planned steps")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "export":
        from .export import export_run

        entry = export_run(args.kind, args.out, args.weights_dir, args.allow_partial)
        print(json.dumps({k: entry[k] for k in ("file", "sha256", "bytes")}, indent=2))
        return 0
    if args.cmd == "pairs":
        from . import multiview as mv

        seed = mv.PAIR_DATA_SEED if args.seed is None else args.seed
        if args.check:
            print(json.dumps(mv.check_pairs(seed=seed)))
            return 0
        mv.write_pool(args.out, args.n, args.size, seed, workers=args.workers)
        return 0
    torch.set_num_threads(args.threads)
    if args.cmd == "vit":
        from .vit import ViTPretrainConfig as Config
        from .vit import train_vit as train
    elif args.cmd == "depth":
        from .depth import DepthPretrainConfig as Config
        from .depth import train_depth as train
    else:
        Config = None
    n_train = args.n_train or 5000
    multiview = args.cmd == "vit" and args.objective.startswith("multiview")
    if multiview:
        from ..errors import DepthGError

        if not args.pool:
            raise DepthGError("--objective multiview needs --pool: render view pairs first with "
                              "`python -m depthg_lib.pretrain pairs --out POOL`")
        pool_record = data_record(args.pool)
        if not pool_record:
            raise DepthGError(f"{args.pool} holds no view pairs; render them with "
                              f"`python -m depthg_lib.pretrain pairs --out {args.pool}`")
        # the pool's own seed, size and count are what the run and the manifest record
        n_train = min(args.n_train or pool_record["n"], pool_record["n"])
    record = data_record(args.data)
    same = record and (record.get("n_train"), record.get("size"), record.get("seed")) == (
        n_train, args.size, args.data_seed)
    if not (getattr(args, "resume", False) and same) and not multiview:
        # a resumed run keeps the scenes it started with, even if the renderer moved on since
        ensure_synthscenes(args.data, n_train=n_train, n_val=0, size=args.size,
                           seed=args.data_seed)
    if Config is None:
        return 0
    changes = {"seed": args.seed, "data_seed": args.data_seed, "data_size": args.size,
               "n_train": n_train}
    if args.cmd == "vit":
        from .vit import OBJECTIVE_PRESETS

        changes.update(OBJECTIVE_PRESETS[args.objective])
    changes.update({k: getattr(args, k) for k in ("steps", "batch") if getattr(args, k)})
    if args.cmd == "vit":
        from ..env import resolve_device

        changes.update({k: getattr(args, k) for k in (
            "input_size", "max_matches", "lr", "vit_dim", "vit_depth", "vit_heads", "log_every",
            "checkpoint_minutes") if getattr(args, k) is not None})
        if multiview:
            changes.update(pool=str(args.pool), data_seed=pool_record["seed"],
                           data_size=pool_record["size"])
        if changes.get("objective") in ("multiview", "supervised"):
            changes["device"] = str(resolve_device(args.device))
            changes["bf16"] = bool(args.bf16)
    cfg = dataclasses.replace(Config(), **changes)
    out = Path(args.out)
    command_file = out / "command.txt"
    if not args.resume or not command_file.exists():
        out.mkdir(parents=True, exist_ok=True)
        command_file.write_text(
            command_line(argv).replace(" --export", "").replace(" --resume", "") + "\n")
    extra = {"max_minutes": args.max_minutes} if args.cmd == "vit" else {}
    summary = train(str(out), cfg, args.data, resume=args.resume, **extra)
    print(json.dumps(summary))
    if args.export:
        from .export import export_run

        entry = export_run(args.cmd, out, args.weights_dir)
        print(json.dumps({k: entry[k] for k in ("file", "sha256", "bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
