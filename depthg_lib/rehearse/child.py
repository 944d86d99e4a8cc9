"""One rehearsal stage in its own process (started by `runner.run_stage`, which measures it):

    python -m depthg_lib.rehearse.child STAGE OUT [--force]

`--force`: the library's stage redoes its outputs instead of resuming (the rehearsal's
--force, so that a re-measured stage is measured doing its work).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import load_profile
from ..errors import run_cli
from ..io import load_json, save_json
from .stages import STAGES, Context


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    stage, out, force = args[0], Path(args[1]), "--force" in args[2:]
    record = load_json(out / "REHEARSAL.json")
    settings = record["settings"]
    ctx = Context(out=out, profile=load_profile(out / "profile" / f"{settings['profile']}.yaml"),
                  original=load_profile(record["profile source"]), scale=settings["scale"],
                  sample=settings["sample"], steps=settings["steps"],
                  knn_blocks=settings["knn_blocks"], force=force)
    detail = STAGES[stage](ctx)
    save_json(out / "stages" / f"{stage}.detail.json", detail)
    return 0


if __name__ == "__main__":
    run_cli(main)
