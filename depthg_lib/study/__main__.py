"""python -m depthg_lib.study --profile study [--report-seed S] [--seeds N] [--resume]"""

from __future__ import annotations

import argparse
import shlex
import sys

from ..config import REPO_ROOT, positive_int
from ..env import device_arg
from ..errors import run_cli
from ..io import load_json
from .readme import ci_lines, readme_summary, results_table
from .runner import run_study


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.study", description=(
        "The fair, resumable study of chapter 06 (docs/method.md §10)."))
    parser.add_argument("--profile", default="study", help="profile name or YAML path")
    parser.add_argument("--report-seed", type=int, default=None,
                        help="SynthScenes seed of the report split (default: the profile's)")
    parser.add_argument("--seeds", type=positive_int, default=None,
                        help="training seeds (default: the profile's ablation_seeds)")
    parser.add_argument("--resume", action="store_true", help="continue the study stored in --out")
    parser.add_argument("--force", action="store_true", help="forget stored results")
    parser.add_argument("--out", default=None, help="default: runs/<profile>/study")
    parser.add_argument("--publish", action="store_true",
                        help="also write docs/study/results.json and the figures")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--write-only", action="store_true",
                        help="train nothing: write results and figures from what is stored")
    parser.add_argument("--summary", metavar="RESULTS", default=None,
                        help="only print the README paragraph of a results file and stop")
    args = parser.parse_args(argv)
    if args.summary:
        print(readme_summary(load_json(args.summary)))
        return 0
    given = argv if argv is not None else sys.argv[1:]
    shown = [a for a in given if a not in ("--no-progress", "--write-only")]
    shown = [("DIR" if i and shown[i - 1] == "--out" else a) for i, a in enumerate(shown)]
    command = " ".join(["python -m depthg_lib.study", *shown])
    try:
        results = run_study(args.profile, out_dir=args.out, seeds=args.seeds,
                            report_seed=args.report_seed, device=args.device,
                            progress=not args.no_progress, resume=args.resume, force=args.force,
                            publish=REPO_ROOT / "docs" / "study" if args.publish else None,
                            command=command, write_only=args.write_only)
    except KeyboardInterrupt:  # the command that continues: never --force, always --resume
        again = [a for a in given if a != "--force"] + ([] if args.resume else ["--resume"])
        print("interrupted: the runs stored so far are kept; continue with "
              f"`python -m depthg_lib.study {shlex.join(again)}`", file=sys.stderr)
        return 130
    print("\n".join([results_table(results), *ci_lines(results),
                     f"{results['runs_done']} of {results['runs_total']} runs stored"]))
    return 0


if __name__ == "__main__":
    run_cli(main)
