"""Time every chapter of a profile, as the course runner runs them.

    python benchmarks/course.py --profile test        # runs the course with --force
    python benchmarks/course.py --profile demo --no-run   # tabulate the last run only

Prints a table (chapter, seconds, status) and appends one row per chapter and one for the
total to `benchmarks/results/<machine>.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_rows, machine_name, print_table, today  # noqa: E402

from depthg_lib.config import load_profile  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="test")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-run", action="store_true", help="only tabulate summary.json")
    args = parser.parse_args()

    profile = load_profile(args.profile)
    wall = None
    if not args.no_run:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "depthg_lib.course", "--profile", profile.name,
                        "--force", "--device", args.device], check=True)
        wall = time.perf_counter() - start
    summary = json.loads((profile.paths.run_dir / "summary.json").read_text())
    rows = [{"name": f"course/{profile.name}/{chapter}", "profile": profile.name,
             "chapter": chapter, "seconds": entry.get("seconds"), "status": entry.get("status"),
             "device": args.device, "date": today()}
            for chapter, entry in sorted(summary["notebooks"].items())]
    total = sum(r["seconds"] or 0 for r in rows)
    rows.append({"name": f"course/{profile.name}/total", "profile": profile.name,
                 "chapter": "total (chapters)", "seconds": round(total, 1),
                 "wall_seconds": None if wall is None else round(wall, 1),
                 "status": "ok" if all(r["status"] == "ok" for r in rows) else "incomplete",
                 "device": args.device, "date": today()})
    print_table(rows, ["chapter", "seconds", "status"])
    if wall is not None:
        print(f"wall time including papermill start-up: {wall:.1f} s")
    path = append_rows(rows)
    print(f"rows appended to {path} (machine {machine_name()})")


if __name__ == "__main__":
    main()
