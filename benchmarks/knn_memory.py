"""Peak memory of kNN mining grows with the block size, not with N².

    python benchmarks/knn_memory.py --n 250000 --dim 384 --block 2048 --k 30

Each N runs in a fresh subprocess, so its peak resident set (ru_maxrss) is its own. The table
shows N, the feature matrix's own size (N·D·4 bytes, unavoidable), one score block
(block·N·4 bytes), what an N×N float32 matrix would need, the measured peak RSS and the time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads({threads})
from depthg_lib.knn import topk_neighbours
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rng = np.random.default_rng(0)
feats = rng.standard_normal(({n}, {dim}), dtype=np.float32)
feats /= np.linalg.norm(feats, axis=1, keepdims=True)
start = time.perf_counter()
nns = topk_neighbours(feats, {k}, block={block})
seconds = time.perf_counter() - start
assert nns.shape == ({n}, {k} + 1) and (nns[:, 0] == np.arange({n})).all()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(peak_rss_mb=peak / 1024, import_rss_mb=base / 1024, seconds=seconds)))
"""


def main() -> None:
    from _common import append_rows, machine_name, print_table, today

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[25_000, 100_000, 250_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    rows = []
    for n in args.n:
        code = CHILD.format(n=n, dim=args.dim, k=args.k, block=args.block,
                            threads=args.threads)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
        measured = json.loads(out)
        mb = 1024 * 1024
        rows.append({"name": "knn_memory", "N": n, "D": args.dim, "block": args.block,
                     "k": args.k, "features_mb": round(n * args.dim * 4 / mb, 1),
                     "score_block_mb": round(args.block * n * 4 / mb, 1),
                     "nxn_would_be_mb": round(n * n * 4 / mb),
                     "peak_rss_mb": round(measured["peak_rss_mb"], 1),
                     "after_imports_mb": round(measured["import_rss_mb"], 1),
                     "seconds": round(measured["seconds"], 1),
                     "wall_s": round(time.perf_counter() - start, 1), "date": today()})
    print_table(rows, ["N", "D", "block", "features_mb", "score_block_mb", "nxn_would_be_mb",
                       "after_imports_mb", "peak_rss_mb", "seconds"])
    print(f"rows appended to {append_rows(rows)} (machine {machine_name()})")


if __name__ == "__main__":
    main()
