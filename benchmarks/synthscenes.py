"""SynthScenes rendering speed on one CPU core (docs/method.md §1 asks >= 20 images/s at 128 px).

    .venv/bin/python benchmarks/synthscenes.py [--seconds 3] [--sizes 64 128 224]

Prints images/s per size (render only, and render + writing the files) and appends one row
per measurement to benchmarks/results/<machine>.json (via `_common.append_rows`, imported only
after timing because it loads torch). Both wall-clock and CPU-time rates are kept: on a shared
machine the CPU-time rate is the one that says what one free core does.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # one core; must be set before numpy loads

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from depthg_lib.data.synthscenes import generate, render_scene  # noqa: E402


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, numpy {np.__version__}"


def measure(fn, seconds: float) -> tuple[float, float, int]:
    """(images/s wall, images/s CPU time, images) over at least `seconds` of wall time."""
    fn(0)  # warm-up
    n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn(n + 1)
        n += 1
        if time.perf_counter() - wall0 >= seconds and n >= 3:
            break
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, n / max(cpu, 1e-9), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    rows = []
    date = datetime.datetime.now().isoformat(timespec="seconds")
    print(f"{'benchmark':24s} {'size':>5s} {'img/s wall':>11s} {'img/s cpu':>10s} {'n':>5s}")
    for size in args.sizes:
        cases = [("synthscenes.render", lambda i, s=size: render_scene(
            np.random.default_rng([0, 0, i]), s))]
        if size == 128:
            tmp = tempfile.TemporaryDirectory()

            def write(i, s=size, root=Path(tmp.name)):
                # one fresh folder per image so nothing is skipped; includes JPEG/PNG/npy I/O
                generate(root / str(i), n_train=1, n_val=0, size=s, seed=i, progress=False)

            cases.append(("synthscenes.generate", write))
        for name, fn in cases:
            wall, cpu, n = measure(fn, args.seconds)
            print(f"{name:24s} {size:5d} {wall:11.1f} {cpu:10.1f} {n:5d}")
            rows.append({"name": name, "size": size, "images_per_s": round(wall, 2),
                         "images_per_s_cpu": round(cpu, 2), "n_images": n, "date": date,
                         "machine": machine(), "load_avg_1min": round(os.getloadavg()[0], 2)})
    if not args.no_save:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import append_rows  # loads torch: only after the timings

        path = append_rows(rows)
        print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
