"""The rehearsal folder and its stages: each stage runs in a child process whose wall time,
CPU time and peak memory the parent reads (`os.wait4`), and whose outputs' files and disk it
counts; every result is recorded in `<out>/stages/<stage>.json` with what it ran on.

Layout of `<out>` (nothing of it ever goes into a real dataset's folder):

    REHEARSAL.json           provenance: profile, scale, settings, machine, command, commit
    profile/<P>.yaml         the paper profile with the stand-in data root and weights
    data/                    its data_root: dataset tree, cropped/, nns/, models/backbones/
    runs/<P>/                its runs folder (train/, eval/)
    stages/<stage>.json      the measurements; logs/<stage>.log the child's output
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..config import REPO_ROOT, Profile, load_profile, profile_arg
from ..errors import DepthGError
from ..io import load_json, save_json

MARKER = "REHEARSAL.json"
STAGE_ORDER = ("weights", "data", "depth", "crop", "knn", "train", "evaluate")


def standin_profile(out: Path, original: Profile, sample: int, batch: int | None) -> Path:
    """Write `<out>/profile/<name>.yaml`: `extends` the paper profile, and changes only where
    data and weights are read from, the depth network (the embedded one), the validation
    crops during training (`sample`) and, if asked, the batch."""
    path = out / "profile" / f"{original.name}.yaml"
    lines = [f"# Rehearsal copy of {original.name} (python -m depthg_lib.rehearse): stand-in "
             "data and weights.",
             f"extends: {Path(original.source).resolve()}",
             f"data_root: {out / 'data'}",
             f"backbone_weights: {out / 'data' / 'models' / 'backbones' / original.backbone}.pth",
             f"val_images: {max(1, sample)}",
             "depth_backend: synth  # the embedded depth net: ZoeDepth is not on this machine",
             'depth_model: ""']
    if batch:
        lines.append(f"batch_size: {batch}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_out(out: Path, original: Profile) -> None:
    """Refuse an output folder that is, or is inside, a real data or runs folder, or the
    repository; or a non-empty folder that is not a rehearsal's."""
    real = [original.paths.data_root, original.paths.dataset_dir, REPO_ROOT]
    for folder in real:
        if _inside(out, folder) or _inside(folder, out):
            raise DepthGError(f"--out {out} overlaps {folder}: a rehearsal writes stand-in data "
                              "and must never mix with a real dataset or the repository; choose "
                              f"a folder outside both, e.g. {Path(tempfile.gettempdir())}"
                              "/depthg-rehearse")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise DepthGError(f"--out {out} is not empty and holds no {MARKER}: not a rehearsal "
                          "folder; choose an empty or new folder")


def clean(out: Path) -> None:
    """Remove a rehearsal folder — only one that its marker file says is a rehearsal's."""
    if not out.exists():
        print(f"{out}: nothing to remove")
        return
    if not (out / MARKER).is_file():
        raise DepthGError(f"{out} holds no {MARKER}: not a rehearsal folder, not removed")
    shutil.rmtree(out)
    print(f"removed {out}")


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def open_rehearsal(out: Path, profile: str, settings: dict, command: str) -> dict:
    """Create or reopen `<out>`: the same profile and scale continue (stages already measured
    with the same settings are kept); another profile or scale is refused."""
    original = load_profile(profile)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / MARKER
    if marker.is_file():
        old = load_json(marker)
        for key in ("profile", "scale"):
            if old["settings"].get(key) != settings[key]:
                raise DepthGError(f"{out} holds a rehearsal of {key} {old['settings'].get(key)!r}"
                                  f", not {settings[key]!r}; use another --out, or remove it with "
                                  f"`python -m depthg_lib.rehearse --clean --out {out}`")
    from ..env import machine_name

    record = {"what": "depthg rehearsal: stand-in data and weights, never a real dataset",
              "settings": settings, "profile source": profile_arg(original),
              "machine": machine_name(), "command": command, "commit": _git_commit(),
              "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    if marker.is_file():
        record["created"] = load_json(marker).get("created", record["updated"])
    else:
        record["created"] = record["updated"]
    save_json(marker, record)
    standin_profile(out, original, settings["sample"], settings.get("batch"))
    return record


def _disk(paths: list[Path]) -> dict:
    """Bytes on disk and file count under `paths` (files or folders)."""
    size = files = 0
    for root in paths:
        if root.is_file():
            size, files = size + root.stat().st_blocks * 512, files + 1
            continue
        for folder, _dirs, names in os.walk(root):
            for name in names:
                try:
                    size += os.stat(os.path.join(folder, name)).st_blocks * 512
                    files += 1
                except OSError:
                    pass
    return {"bytes": size, "files": files}


def stage_outputs(stage: str, profile: Profile, out: Path) -> list[Path]:
    """What a stage writes (runs under `<out>/runs`, as the child's DEPTHG_RUNS says)."""
    p, run_dir = profile.paths, out / "runs" / profile.name
    return {"weights": [Path(profile.backbone_weights)],
            "data": [d for d in p.dataset_dir.iterdir() if d.name != "depth"]
            if p.dataset_dir.is_dir() else [],
            "depth": [p.dataset_dir / "depth"], "crop": [p.crop_dir],
            "knn": [p.knn_file("train")], "train": [run_dir / "train"],
            "evaluate": [run_dir / "eval"]}[stage]


def run_stage(out: Path, stage: str, settings: dict, force: bool = False) -> dict:
    """Run one stage in a child process and record it; a stage already recorded with the same
    settings is not run again (unless `force`). An interrupted or failed stage runs again
    (the library's stages resume) and its attempts add up."""
    path = out / "stages" / f"{stage}.json"
    old = load_json(path) if path.is_file() else None
    if old and old.get("status") == "ok" and old.get("settings") == settings and not force:
        return old
    resumed = old and old.get("settings") == settings and not force
    attempts = old["attempts"] if resumed else []  # a forced stage is measured afresh
    log = out / "logs" / f"{stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DEPTHG_RUNS": str(out / "runs"), "PYTHONWARNINGS": "ignore"}
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    detail_file = out / "stages" / f"{stage}.detail.json"
    detail_file.unlink(missing_ok=True)
    record = {"stage": stage, "settings": settings, "status": "running", "attempts": attempts}
    save_json(path, record)
    with open(log, "a") as fh:
        fh.write(f"--- {started}: stage {stage}\n")
        fh.flush()
        begin = time.perf_counter()
        argv = [sys.executable, "-m", "depthg_lib.rehearse.child", stage, str(out)]
        child = subprocess.Popen(argv + (["--force"] if force else []), stdout=fh,
                                 stderr=subprocess.STDOUT, env=env)
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    attempts.append({"started": started, "wall_s": round(time.perf_counter() - begin, 2),
                     "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                     "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": child.returncode})
    profile = load_profile(out / "profile" / f"{settings['profile']}.yaml")
    record.update(disk=_disk(stage_outputs(stage, profile, out)),
                  detail=load_json(detail_file) if detail_file.is_file() else None)
    record["status"] = "ok" if child.returncode == 0 and record["detail"] else "failed"
    save_json(path, record)
    if record["status"] != "ok":
        tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise DepthGError(f"rehearsal stage {stage} failed (exit {child.returncode}): {tail[0]}"
                          f" — full output in {log}; run the same command again to resume")
    return record


def measured(out: Path) -> dict[str, dict]:
    """The recorded stages of a rehearsal folder, in stage order."""
    found = {}
    for stage in STAGE_ORDER:
        path = out / "stages" / f"{stage}.json"
        if path.is_file():
            found[stage] = json.loads(path.read_text())
    return found
