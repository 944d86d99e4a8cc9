"""`python -m depthg_lib.rehearse`: each stage in a child process (`stages`) whose wall and CPU
time and peak memory the parent reads (`os.wait4`) and whose outputs it counts. `--out` holds
REHEARSAL.json (provenance), profile/<P>.yaml, data/, runs/<P>/, stages/<stage>.json (the
measurements) and logs/<stage>.log."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import REPO_ROOT, Profile, available_profiles, load_profile, profile_arg
from ..env import machine_name
from ..errors import DepthGError
from ..io import load_json, save_json
from .project import SHIPPED, publish, stage_rows, table
from .standin import FACTS

MARKER = "REHEARSAL.json"
STAGE_ORDER = ("weights", "data", "depth", "crop", "knn", "train", "evaluate")
DEFAULT_OUT = str(Path(tempfile.gettempdir()) / "depthg-rehearse")


def _scale(text: str) -> float:
    with contextlib.suppress(ValueError):
        if 0 < float(text) <= 1:
            return float(text)
    raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def open_rehearsal(out: Path, original: Profile, settings: dict, command: str) -> None:
    """Create or reopen `<out>` with `profile/<name>.yaml` (the paper profile on the stand-ins).
    Refused: an `out` overlapping real data or the repository, a non-empty folder that is no
    rehearsal's, or a rehearsal of another profile or scale."""
    for folder in (original.paths.data_root, original.paths.dataset_dir, REPO_ROOT):
        mine, theirs = out.resolve(), folder.resolve()
        if mine.is_relative_to(theirs) or theirs.is_relative_to(mine):
            raise DepthGError(f"--out {out} overlaps {folder}: a rehearsal writes stand-in data "
                              "and must never mix with a real dataset or the repository; choose "
                              f"a folder outside both, e.g. {DEFAULT_OUT}")
    marker = out / MARKER
    if out.exists() and any(out.iterdir()) and not marker.is_file():
        raise DepthGError(f"--out {out} is not empty and holds no {MARKER}: not a rehearsal "
                          "folder; choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    old = load_json(marker) if marker.is_file() else {"settings": settings}
    for key in ("profile", "scale"):
        if old["settings"].get(key) != settings[key]:
            raise DepthGError(f"{out} holds a rehearsal of {key} {old['settings'].get(key)!r}"
                              f", not {settings[key]!r}; use another --out, or remove {out}")
    commit = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    save_json(marker, {"what": "depthg rehearsal: stand-in data and weights, never a real dataset",
                       "settings": settings, "profile source": profile_arg(original),
                       "machine": machine_name(), "command": command, "commit": commit,
                       "updated": _now(), "created": old.get("created", _now())})
    weights = out / "data" / "models" / "backbones" / f"{original.backbone}.pth"
    lines = [f"# Rehearsal copy of {original.name} (python -m depthg_lib.rehearse)",
             f"extends: {Path(original.source).resolve()}", f"data_root: {out / 'data'}",
             f"backbone_weights: {weights}", f"val_images: {max(1, settings['sample'])}",
             "depth_backend: synth  # the embedded depth net: ZoeDepth is not on this machine",
             'depth_model: ""']
    lines += [f"batch_size: {settings['batch']}"] if settings["batch"] else []
    (out / "profile").mkdir(exist_ok=True)
    (out / "profile" / f"{original.name}.yaml").write_text("\n".join(lines) + "\n")


def _disk(paths: list[Path]) -> dict:
    """Bytes on disk and file count under `paths` (files or folders)."""
    files = [f for root in paths for f in (root.rglob("*") if root.is_dir() else [root])
             if f.is_file()]
    return {"bytes": sum(f.stat().st_blocks * 512 for f in files), "files": len(files)}


def stage_outputs(stage: str, profile: Profile, out: Path) -> list[Path]:
    """What a stage writes (runs under `<out>/runs`, as the child's DEPTHG_RUNS says)."""
    p, run_dir = profile.paths, out / "runs" / profile.name
    return {"weights": [Path(profile.backbone_weights)],
            "data": [d for d in p.dataset_dir.glob("*") if d.name != "depth"],
            "depth": [p.dataset_dir / "depth"], "crop": [p.crop_dir],
            "knn": [p.knn_file("train")], "train": [run_dir / "train"],
            "evaluate": [run_dir / "eval"]}[stage]


def _run_child(argv: list[str], log, env: dict) -> tuple[int, object, list[int]]:
    """Run a stage's child in its own process group and wait for it, passing SIGINT or SIGTERM
    on once: the child stops as a stage does and its attempt is still measured and recorded."""
    child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0)
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        _pid, status, usage = os.wait4(child.pid, 0)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage, received


def run_stage(out: Path, stage: str, settings: dict, force: bool = False) -> dict:
    """Run one stage in a child process and record it, unless recorded with the same settings
    (and not `force`); an interrupted or failed stage runs again, its attempts adding up."""
    path, detail_file = out / "stages" / f"{stage}.json", out / "stages" / f"{stage}.detail.json"
    old = load_json(path) if path.is_file() else {}
    same = old.get("settings") == settings and not force  # a forced stage is measured afresh
    if same and old.get("status") == "ok":
        return old
    record = {"stage": stage, "settings": settings, "status": "running",
              "attempts": old["attempts"] if same else []}
    save_json(path, record)
    detail_file.unlink(missing_ok=True)
    profile = load_profile(out / "profile" / f"{settings['profile']}.yaml")
    before = 0 if force else _disk(stage_outputs(stage, profile, out))["files"]  # force: redo all
    started, log = _now(), out / "logs" / f"{stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "depthg_lib.rehearse.stages", stage, str(out)]
    env = {**os.environ, "DEPTHG_RUNS": str(out / "runs"), "PYTHONWARNINGS": "ignore"}
    with open(log, "a") as fh:
        print(f"--- {started}: stage {stage}", file=fh, flush=True)
        begin = time.perf_counter()
        rc, usage, signals = _run_child(argv + (["--force"] if force else []), fh, env)
    disk = _disk(stage_outputs(stage, profile, out))  # listed again: the data stage adds folders
    record["attempts"].append({
        "started": started, "wall_s": round(time.perf_counter() - begin, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": rc, "files_before": before,
        "files_after": disk["files"]})
    record.update(disk=disk, detail=load_json(detail_file) if detail_file.is_file() else None)
    ok = rc == 0 and record["detail"]
    record["status"] = "interrupted" if signals else "ok" if ok else "failed"
    save_json(path, record)
    if signals:
        raise KeyboardInterrupt
    if record["status"] != "ok":
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise DepthGError(f"rehearsal stage {stage} failed (exit {rc}): {tail[0]} — full output "
                          f"in {log}; run the same command again to resume")
    return record


def measured(out: Path) -> dict[str, dict]:
    """The recorded stages of a rehearsal folder, in stage order."""
    paths = {stage: out / "stages" / f"{stage}.json" for stage in STAGE_ORDER}
    return {stage: load_json(path) for stage, path in paths.items() if path.is_file()}


def rehearse(profile: str, scale: float, out: Path, sample: int = 2, steps: int = 1,
             batch: int | None = None, only: list[str] | None = None, force: bool = False,
             command: str = "") -> str:
    """Run the rehearsal's stages into `out`; returns the table (also in `out/table.md`)."""
    original = load_profile(profile)
    if original.dataset not in FACTS:
        raise DepthGError(f"profile {original.name} reads dataset {original.dataset!r}; a "
                          "rehearsal stands in for cocostuff27, cityscapes and potsdam only")
    out = Path(out).expanduser().resolve()
    settings = {"profile": original.name, "scale": scale, "sample": sample, "steps": steps,
                "batch": batch, "knn_blocks": 1}  # top-k blocks mined for real
    open_rehearsal(out, original, settings, command)
    for stage in only or STAGE_ORDER:
        print(f"[rehearse {original.name} F={scale:g}] {stage} ...", flush=True)
        run_stage(out, stage, settings, force=force)
    return write_table(out)


def write_table(out: Path) -> str:
    original = load_profile(load_json(out / MARKER)["profile source"])
    text = table(*stage_rows(measured(out), original))
    (out / "table.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.rehearse",
        description="Run a paper profile's stages on stand-ins at scale F, resumably, and print "
                    "what each cost and the projected full run (docs/scaling.md).")
    add = parser.add_argument
    add("--profile", help="a paper profile (cocostuff27-vits8, ...) or its YAML file")
    add("--scale", type=_scale, default=0.01, help="F in (0, 1]: round(F×N) images per split "
        "stand in (default 0.01)")
    add("--out", default=DEFAULT_OUT, help=f"rehearsal folder, outside the repository and any "
        f"real data (default {DEFAULT_OUT})")
    add("--sample", type=int, default=2, help="images / crops on which the compute a CPU cannot "
        "do at full scale is timed (default 2; 0 skips those samples)")
    add("--steps", type=int, default=1, help="training steps run (default 1)")
    add("--batch", type=int, help="training batch (default: the profile's)")
    add("--only", help=f"comma-separated stages to run, of {', '.join(STAGE_ORDER)}")
    add("--force", action="store_true", help="re-run stages already measured")
    add("--publish", action="store_true", help="record --out's rehearsal in the library's "
        "measurements.json (what the fetch dry run prints); run nothing")
    add("--table", action="store_true", help="print the table of what --out holds; run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    if args.table or args.publish:
        print(write_table(out))
        if args.publish:
            entry = publish(load_json(out / MARKER), measured(out))
            print(f"recorded {entry['profile']} (F = {entry['scale']:g}) in {SHIPPED}")
        return 0
    if not args.profile:
        raise DepthGError("--profile is needed (one of "
                          f"{', '.join(p for p in available_profiles() if '-' in p)})")
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = set(only or []) - set(STAGE_ORDER)
    if unknown:
        raise DepthGError(f"--only: unknown stage(s) {', '.join(sorted(unknown))}; stages are "
                          f"{', '.join(STAGE_ORDER)}")
    command = shlex.join(["python", "-m", "depthg_lib.rehearse",
                          *(sys.argv[1:] if argv is None else argv)])
    print(rehearse(args.profile, args.scale, out, args.sample, args.steps, args.batch, only,
                   args.force, command))
    return 0
