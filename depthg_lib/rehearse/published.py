"""The rehearsals shipped with the library (`measurements.json`): per profile, what was
measured, where and when, and the projected full run — what `python -m depthg_lib.fetch
--dry-run` (and so `make reproduce DRY_RUN=1`) prints as the run's disk and time.

    python -m depthg_lib.rehearse --publish --out DIR     # add DIR's rehearsal to the file
"""

from __future__ import annotations

from pathlib import Path

from ..config import load_profile
from ..io import load_json, save_json
from . import runner
from .project import human_bytes, human_seconds, project, scale_of, totals

SHIPPED = Path(__file__).with_name("measurements.json")


def summarise(out: Path) -> dict:
    """One rehearsal folder as the entry the shipped file keeps."""
    record = load_json(out / runner.MARKER)
    original = load_profile(record["profile source"])
    stages = runner.measured(out)
    f = scale_of(stages, original.dataset)
    rows = {}
    for stage, rec in stages.items():
        if rec.get("status") != "ok":
            rows[stage] = {"status": rec.get("status")}
            continue
        p = project(stage, rec, original.dataset, original, f)
        wall, cpu, rss = totals(rec)
        rows[stage] = {"status": "ok", "files": rec["disk"]["files"],
                       "disk_bytes": rec["disk"]["bytes"], "wall_s": round(wall, 1),
                       "cpu_s": round(cpu, 1), "peak_rss_bytes": rss,
                       "what_ran": rec["detail"].get("what ran", {}),
                       "projected": {k: (round(v, 1) if isinstance(v, float) else v)
                                     for k, v in p.items()}}
    settings = record["settings"]
    return {"profile": original.name, "scale": settings["scale"], "share": f,
            "settings": settings, "machine": record["machine"], "commit": record["commit"],
            "date": record["updated"][:10],
            "command": _command(original.name, settings), "stages": rows}


def _command(name: str, settings: dict) -> str:
    """The command line that repeats a rehearsal (its folder left as DIR)."""
    batch = f" --batch {settings['batch']}" if settings.get("batch") else ""
    return (f"python -m depthg_lib.rehearse --profile {name} --scale {settings['scale']:g} "
            f"--sample {settings['sample']} --steps {settings['steps']}{batch} --out DIR")


def publish(out: Path, path: Path = SHIPPED) -> dict:
    entry = summarise(out)
    shipped = load_json(path) if path.is_file() else {}
    shipped[entry["profile"]] = entry
    save_json(path, dict(sorted(shipped.items())))
    return entry


def lookup(profile_name: str, path: Path = SHIPPED) -> dict | None:
    """The entry of a profile; a `stego-*` twin falls back to its DepthG profile (the same
    data, backbone and sizes; only the loss differs)."""
    shipped = load_json(path) if path.is_file() else {}
    return shipped.get(profile_name) or shipped.get(profile_name.removeprefix("stego-"))


def dry_run_lines(profile_name: str, path: Path = SHIPPED) -> list[str]:
    """What the fetch dry run adds: the run's own disk and time, from the shipped rehearsal
    of this profile; one line saying there is none otherwise."""
    entry = lookup(profile_name, path)
    if entry is None:
        return [f"the run itself: no rehearsal of {profile_name} is recorded; estimate its disk "
                f"and time with `python -m depthg_lib.rehearse --profile {profile_name}`"]
    how = ("measured at full size" if entry["scale"] == 1
           else f"measured at F = {entry['scale']:g} and scaled to the full size")
    lines = [f"the run itself (rehearsal on stand-ins, {how}, {entry['machine']}, "
             f"{entry['date']}; docs/scaling.md):"]
    disk = gpu = 0.0
    for stage, row in entry["stages"].items():
        if row.get("status") != "ok" or stage in ("weights", "data"):
            continue
        p = row["projected"]
        disk += p.get("disk_bytes") or 0.0
        gpu += p.get("gpu_s") or 0.0
        lines.append(f"  {stage:<9} disk {human_bytes(p.get('disk_bytes')):>9}   one GPU "
                     f"{human_seconds(p.get('gpu_s')):>8}   this CPU "
                     f"{human_seconds(p.get('cpu_s')):>8}   peak RSS at F "
                     f"{human_bytes(row['peak_rss_bytes'])}")
    missing = [s for s in ("depth", "crop", "knn", "train", "evaluate")
               if (entry["stages"].get(s) or {}).get("status") != "ok"]
    lines.append(f"  outputs need about {human_bytes(disk)} beside the data; about "
                 f"{human_seconds(gpu)} on one GPU (projected: assumed throughput)"
                 + (f"; not rehearsed: {', '.join(missing)}" if missing else ""))
    return lines
