"""`python -m depthg_lib.rehearse`: run a paper profile's stages on stand-ins at scale F and
print per stage files, wall time, CPU time, peak memory, disk and the projected full run."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from ..config import available_profiles, load_profile
from ..errors import DepthGError
from ..io import load_json, save_json
from . import runner
from .project import SHIPPED, publish, stage_rows, table
from .standin import FACTS

DEFAULT_OUT = str(Path(tempfile.gettempdir()) / "depthg-rehearse")


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.rehearse",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Stages: " + ", ".join(runner.STAGE_ORDER) + ". Resumable: the same command "
               "again skips stages already measured and continues an interrupted one. "
               "docs/scaling.md explains the table.")
    add = parser.add_argument
    add("--profile", help="a paper profile (cocostuff27-vits8, cityscapes-vitb8, ...) or its "
        "YAML file")
    add("--scale", type=_scale, default=0.01, help="F: share of the dataset's images to stand "
        "in, round(F×N) per split (default 0.01; 1 = the full size)")
    add("--out", default=DEFAULT_OUT, help="rehearsal folder, outside the repository and any "
        f"real data (default {DEFAULT_OUT})")
    add("--sample", type=int, default=2, help="images / crops on which the compute a CPU cannot "
        "do at full scale is timed (depth net, kNN features, evaluation; default 2); 0 skips "
        "those samples")
    add("--steps", type=int, default=1, help="training steps run (default 1)")
    add("--batch", type=int, default=None,
        help="training batch (default: the profile's; projections scale to it)")
    add("--knn-blocks", type=int, default=1, help="top-k blocks mined at full size before the "
        "rest of the table is filled with stand-in ids (default 1)")
    add("--only", help="comma-separated stages to run (those before must be done)")
    add("--force", action="store_true", help="re-run stages already measured")
    add("--clean", action="store_true",
        help="remove the rehearsal folder --out (all it wrote) and stop")
    add("--publish", action="store_true", help="record --out's rehearsal in the library's "
        "measurements.json (what the fetch dry run prints); run nothing")
    add("--table", action="store_true", help="print the table of what --out holds; run nothing")
    return parser


def rehearse(profile: str, scale: float, out: Path, sample: int = 2, steps: int = 1,
             batch: int | None = None, knn_blocks: int = 1, only: list[str] | None = None,
             force: bool = False, command: str = "") -> str:
    """Run the rehearsal's stages into `out`; returns the table (also in `out/table.md`)."""
    original = load_profile(profile)
    if original.dataset not in FACTS:
        raise DepthGError(f"profile {original.name} reads dataset {original.dataset!r}; a "
                          "rehearsal stands in for cocostuff27, cityscapes and potsdam only")
    out = Path(out).expanduser().resolve()
    runner.check_out(out, original)
    settings = {"profile": original.name, "scale": scale, "sample": sample, "steps": steps,
                "batch": batch, "knn_blocks": knn_blocks}
    runner.open_rehearsal(out, original, settings, command)
    for stage in only or runner.STAGE_ORDER:
        print(f"[rehearse {original.name} F={scale:g}] {stage} ...", flush=True)
        rec = runner.run_stage(out, stage, settings, force=force)
        last = rec["attempts"][-1]
        print(f"  ok: {last['wall_s']:.1f} s wall, peak RSS {last['peak_rss_bytes'] / 1e9:.2f} "
              f"GB, {rec['disk']['files']:,} files, {rec['disk']['bytes'] / 1e9:.2f} GB",
              flush=True)
    return write_table(out)


def write_table(out: Path) -> str:
    record = load_json(out / runner.MARKER)
    stages = runner.measured(out)
    text = table(*stage_rows(stages, load_profile(record["profile source"])))
    (out / "table.md").write_text(text + "\n")
    save_json(out / "table.json", {"machine": record["machine"], "command": record["command"],
                                   "stages": stages})
    return text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out).expanduser()
    if args.clean:
        runner.clean(out.resolve())
        return 0
    if args.table or args.publish:
        print(write_table(out.resolve()))
        if args.publish:
            entry = publish(out.resolve())
            print(f"recorded {entry['profile']} (F = {entry['scale']:g}) in {SHIPPED}")
        return 0
    if not args.profile:
        raise DepthGError("--profile is needed (one of "
                          f"{', '.join(p for p in available_profiles() if '-' in p)})")
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = [s for s in only or [] if s not in runner.STAGE_ORDER]
    if unknown:
        raise DepthGError(f"--only: unknown stage(s) {', '.join(unknown)}; stages are "
                          f"{', '.join(runner.STAGE_ORDER)}")
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "depthg_lib.rehearse", *given])
    text = rehearse(args.profile, args.scale, out, sample=args.sample, steps=args.steps,
                    batch=args.batch, knn_blocks=args.knn_blocks, only=only, force=args.force,
                    command=command)
    print(text)
    return 0
