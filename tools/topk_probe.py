"""The kNN stage's memory-critical part alone, at a full-size N, without crops (a developer's
probe beside the rehearsal; docs/scaling.md):

    python tools/topk_probe.py --crops 248145 --dim 384 --block 4096 --blocks 1

`knn.topk_neighbours` on stand-in unit features of N × D, stopped after `--blocks` blocks of
the real size: seconds per block and peak RSS as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from unittest import mock

from depthg_lib import knn
from depthg_lib.config import positive_int
from depthg_lib.errors import run_cli
from depthg_lib.rehearse.stages import BlockLimiter, Clock
from depthg_lib.rehearse.standin import unit_rows


def probe(crops: int, dim: int, block: int, blocks: int) -> dict:
    start = time.perf_counter()
    feats = unit_rows(crops, dim)
    made = time.perf_counter() - start
    clock = Clock()
    limiter = BlockLimiter(blocks, clock)
    with mock.patch.object(knn, "tqdm", limiter):
        knn.topk_neighbours(feats, 29, block=block, progress=True)
    wall = clock["top-k block"]["seconds"]
    return {"crops": crops, "dim": dim, "block": block, "blocks run": limiter.ran,
            "blocks": limiter.total, "features s": round(made, 2),
            "seconds per block": round(wall / max(1, limiter.ran), 2),
            "cpu seconds per block": clock.per_item("top-k block"),
            "peak RSS bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "score block bytes": block * crops * 4, "features bytes": crops * dim * 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/topk_probe.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=positive_int, required=True)
    parser.add_argument("--dim", type=positive_int, default=384)
    parser.add_argument("--block", type=positive_int, default=4096)
    parser.add_argument("--blocks", type=positive_int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.crops, args.dim, args.block, args.blocks), indent=1))
    return 0


if __name__ == "__main__":
    run_cli(main)
