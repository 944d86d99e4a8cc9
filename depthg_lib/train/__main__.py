"""`python -m depthg_lib.train` (also under torchrun): the training stage's command line."""

from __future__ import annotations

import argparse
import os
import sys

from ..env import device_arg
from ..errors import run_cli
from .loop import train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.train",
                                     description="Train the DepthG head (chapter 04).")
    parser.add_argument("--profile", required=True, help="profile name or YAML file")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.add_argument("--force", action="store_true", help="discard an earlier run in <out>")
    parser.add_argument("--device", default="auto", type=device_arg, help="auto, cpu, cuda[:N]")
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
