"""CLI: `python -m depthg_lib.pretrain {data,vit,depth,export} ...` (see the package docstring).

    python -m depthg_lib.pretrain data                       # render the pretraining scenes
    python -m depthg_lib.pretrain vit --out /work/pretrain_runs/vit [--resume] [--export]
    python -m depthg_lib.pretrain depth --out /work/pretrain_runs/depth [--resume] [--export]
    python -m depthg_lib.pretrain export vit --out /work/pretrain_runs/vit
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
                           help="self-supervised objective (see depthg_lib/pretrain/vit.py)")
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
    record = data_record(args.data)
    same = record and (record.get("n_train"), record.get("size"), record.get("seed")) == (
        n_train, args.size, args.data_seed)
    if not (args.resume and same):
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
    cfg = dataclasses.replace(Config(), **changes)
    out = Path(args.out)
    command_file = out / "command.txt"
    if not args.resume or not command_file.exists():
        out.mkdir(parents=True, exist_ok=True)
        command_file.write_text(
            command_line(argv).replace(" --export", "").replace(" --resume", "") + "\n")
    summary = train(str(out), cfg, args.data, resume=args.resume)
    print(json.dumps(summary))
    if args.export:
        from .export import export_run

        entry = export_run(args.cmd, out, args.weights_dir)
        print(json.dumps({k: entry[k] for k in ("file", "sha256", "bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
