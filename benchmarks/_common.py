"""Shared benchmark helpers: machine name, timing with peak memory, result rows, tables, and
the run that every "library vs the released structure" benchmark ends with.

Rows are appended to ``benchmarks/results/<machine>.json`` (a JSON list) under a file lock
and written atomically, so two benchmarks finishing at once never lose or corrupt a row.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from depthg_lib.io import atomic_path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROW_KEYS = ("name", "device", "backbone", "batch", "S", "sampling", "fidelity", "ms_per_step",
            "peak_mem_mb", "date")


def machine_name() -> str:
    """``$DEPTHG_MACHINE`` or the host name, made file-name safe."""
    name = os.environ.get("DEPTHG_MACHINE") or platform.node() or "unknown"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} ({os.cpu_count()} cores, " \
           f"{torch.get_num_threads()} threads)"


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release_free_memory() -> None:
    """Return freed heap pages to the OS (glibc), so a block's RSS growth is its own peak."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory a block needs, in MB.

    CUDA: ``torch.cuda.max_memory_allocated`` during the block (absolute, inputs included).
    CPU: the largest resident-set growth over the block's start, polled every millisecond,
    after freed heap pages were returned to the OS (so runs in one process do not hide each
    other's allocations).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mb = float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        _release_free_memory()
        self._start = _rss_bytes()
        self._peak = self._start
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self._peak = max(self._peak, _rss_bytes())
                time.sleep(0.001)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())
            self.peak_mb = (self._peak - self._start) / 2**20
        return False


def time_fn(fn: Callable[[], object], device: torch.device, reps: int,
            warmup: int = 1) -> dict:
    """Run ``fn`` warmup + reps times; min/median milliseconds and peak memory of one run."""
    for _ in range(warmup):
        fn()
    sync(device)
    with PeakMemory(device) as mem:
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return {"min_ms": min(times), "median_ms": statistics.median(times),
            "peak_mem_mb": mem.peak_mb, "reps": reps}


def time_pair(fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device,
              reps: int, warmup: int = 1) -> tuple[dict, dict]:
    """Time two functions alternately (a, b, a, b, …) so that both see the same machine load;
    the min over reps is then a fair ratio on a shared machine. Peak memory of one run each."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    out = []
    for fn in (fn_a, fn_b):
        sync(device)
        with PeakMemory(device) as mem:
            fn()
        out.append({"peak_mem_mb": mem.peak_mb, "reps": reps, "times": []})
    for _ in range(reps):
        for fn, rec in zip((fn_a, fn_b), out):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            rec["times"].append((time.perf_counter() - t0) * 1000)
    for rec in out:
        times = rec.pop("times")
        rec.update(min_ms=min(times), median_ms=statistics.median(times))
    return out[0], out[1]


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def today() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def append_rows(rows: Iterable[dict], machine: str | None = None) -> Path:
    """Append result rows to ``results/<machine>.json`` atomically, under a lock file."""
    path = RESULTS_DIR / f"{machine or machine_name()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)  # lock the folder: no stray lock files
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        try:
            old = json.loads(path.read_text()) if path.exists() else []
        except json.JSONDecodeError:
            old = []
        old.extend(rows)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(old, indent=1) + "\n")
    finally:
        os.close(dir_fd)  # releases the lock
    return path


def result_row(name: str, device: torch.device, backbone: str, batch: int, s: int,
               sampling: str, fidelity: str, ms: float, peak_mb: float, **extra) -> dict:
    row = dict(zip(ROW_KEYS, (name, device.type, backbone, batch, s, sampling, fidelity,
                              round(ms, 3), round(peak_mb, 1), today())))
    row.update(extra)
    return row


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


# ------------------------------------------------- library vs the released structure

def add_versus_args(ap: argparse.ArgumentParser) -> None:
    """The options every library-vs-released benchmark shares: device, fidelity, threads,
    whether to time the baseline, and what to keep (results/ rows, a JSON line)."""
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--fidelity", choices=["released", "corrected"], default="released")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not append to results/")
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object")


def parse_versus_args(ap: argparse.ArgumentParser, argv=None):
    """(args, device): the options parsed, torch's thread count set, the device checked."""
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, resolve_device(args.device)


def run_versus(args, device: torch.device, ours_fn: Callable[[], object],
               base_fn: Callable[[], object] | None, *, names: tuple[str, str], backbone: str,
               sampling: str, extra: dict, columns: list[str], versus: str) -> int:
    """Time the library's step (alternately with the released structure's, unless `base_fn`
    is None), print the table and the speed-up, append the rows to results/ and, with
    ``--json``, print the summary: one run, so every benchmark reports the same way.

    `names` are the two rows' names (library, released); `extra` are the columns a
    benchmark adds to its rows (sizes); `versus` names the baseline in the speed-up line.
    """
    if base_fn is None:
        ours, base = time_fn(ours_fn, device, args.reps), None
    else:
        ours, base = time_pair(ours_fn, base_fn, device, args.reps)

    def row(name: str, fidelity: str, timing: dict) -> dict:
        return result_row(name, device, backbone, args.batch, args.samples, sampling, fidelity,
                          timing["min_ms"], timing["peak_mem_mb"],
                          median_ms=round(timing["median_ms"], 3), **extra,
                          threads=torch.get_num_threads(), load_avg=load_average())

    rows = [row(names[0], args.fidelity, ours)]
    summary = dict(vars(args), **ours, device_name=device_label(device),
                   load_avg=load_average())
    if base is not None:
        rows.append(row(names[1], "released", base))  # the baseline is the released structure
        summary.update(baseline_min_ms=base["min_ms"], baseline_median_ms=base["median_ms"],
                       baseline_peak_mem_mb=base["peak_mem_mb"],
                       speedup=base["min_ms"] / ours["min_ms"])
    print_table(rows, columns)
    if base is not None:
        print(f"speed-up over {versus}: {summary['speedup']:.2f}x "
              f"(min over {args.reps} alternating reps, same inputs, same run; "
              f"load average {load_average()})")
    if not args.no_record:
        print(f"rows appended to {append_rows(rows)}")
    if args.json:
        print(json.dumps(summary))
    return 0
