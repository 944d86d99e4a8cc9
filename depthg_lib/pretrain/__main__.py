"""Train and export the embedded models (see the package docstring).

    python -m depthg_lib.pretrain vit --out runs/pretrain/vit [--resume] [--export]
    python -m depthg_lib.pretrain depth --out runs/pretrain/depth [--resume] [--export]
    python -m depthg_lib.pretrain export vit --out runs/pretrain/vit
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from ..data import synthscenes
from ..errors import run_cli
from .common import DEFAULT_DATA_DIR, PRETRAIN_DATA_SEED, data_record
from .depth import DepthPretrainConfig, train_depth
from .export import export_run
from .vit import ViTPretrainConfig, train_vit

# what `vit` and `depth` train: the settings class and the trainer
_KINDS = {"vit": (ViTPretrainConfig, train_vit), "depth": (DepthPretrainConfig, train_depth)}


def _train_args(q: argparse.ArgumentParser, kind: str) -> None:
    q.set_defaults(kind=kind)
    q.add_argument("--data", default=str(DEFAULT_DATA_DIR),
                   help="SynthScenes folder for pretraining (rendered if missing)")
    q.add_argument("--n-train", type=int, default=5000, help="scenes to render / use")
    q.add_argument("--size", type=int, default=128, help="scene size in pixels")
    q.add_argument("--data-seed", type=int, default=PRETRAIN_DATA_SEED,
                   help="SynthScenes seed (never the evaluation seed 2024)")
    q.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    q.add_argument("--out", required=True, help="run folder (checkpoint, log.csv)")
    q.add_argument("--resume", action="store_true", help="continue the run in --out")
    q.add_argument("--steps", type=int, default=None)
    q.add_argument("--batch", type=int, default=None)
    q.add_argument("--seed", type=int, default=0, help="training seed")
    if kind == "vit":
        q.add_argument("--objective", choices=["vicregl-colour"], default="vicregl-colour",
                       help="the shipped recipe, the only one kept (what else was tried: "
                            "docs/pretraining_history.md)")
    q.add_argument("--export", action="store_true",
                   help="when finished, export the weights into depthg_lib/weights/")
    q.add_argument("--weights-dir", default=None, help="export target (default: the library's)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m depthg_lib.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for kind in _KINDS:
        _train_args(sub.add_parser(kind, help=f"train the embedded {kind}"), kind)
    q = sub.add_parser("export", help="write a finished run's fp16 safetensors + manifest entry")
    q.add_argument("kind", choices=list(_KINDS))
    q.add_argument("--out", required=True, help="run folder")
    q.add_argument("--weights-dir", default=None)
    return p


def _train(args: argparse.Namespace, argv: list[str] | None) -> None:
    torch.set_num_threads(args.threads)
    # a resumed run keeps the scenes it started with, even if the renderer moved on since
    record = data_record(args.data)
    same = (record.get("n_train"), record.get("size"), record.get("seed")) == (
        args.n_train, args.size, args.data_seed)
    if not (args.resume and same):
        synthscenes.generate(args.data, n_train=args.n_train, n_val=0, size=args.size,
                             seed=args.data_seed)
    config, train = _KINDS[args.kind]
    given = {k: getattr(args, k) for k in ("steps", "batch") if getattr(args, k) is not None}
    cfg = dataclasses.replace(config(), seed=args.seed, data_seed=args.data_seed,
                              data_size=args.size, n_train=args.n_train, **given)
    out = Path(args.out)
    if not args.resume or not (out / "command.txt").exists():
        out.mkdir(parents=True, exist_ok=True)
        args_text = " ".join(sys.argv[1:] if argv is None else argv)
        (out / "command.txt").write_text("python -m depthg_lib.pretrain " + args_text.replace(
            " --export", "").replace(" --resume", "") + "\n")
    print(json.dumps(train(str(out), cfg, args.data, resume=args.resume)))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd != "export":
        _train(args, argv)
    if args.cmd == "export" or args.export:
        entry = export_run(args.kind, args.out, args.weights_dir)
        print(json.dumps({k: entry[k] for k in ("file", "sha256", "bytes")}, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
