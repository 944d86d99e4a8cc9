"""From what a rehearsal measured at scale F to the full run on this CPU (measured costs scaled
by how each stage grows, docs/scaling.md) and on one GPU (FLOPs over an *assumed* throughput);
the shipped `measurements.json` (`--publish`) that the fetch dry run prints."""

from __future__ import annotations

import math
from pathlib import Path

from ..config import Profile, load_profile, profile_arg, shipped_name
from ..io import load_json, save_json
from .standin import FACTS

SHIPPED = Path(__file__).with_name("measurements.json")

GPU_TFLOPS = 100.0  # effective fp32/TF32 throughput of one H100 on ViT forwards (assumed)
ZOEDEPTH_PER_S = 20.0  # ZoeDepth images per second on one H100 (assumed; docs/scaling.md)
ASSUMPTIONS = (f"GPU column: FLOPs at an assumed {GPU_TFLOPS:.0f} TFLOP/s effective on one "
               f"H100 and ZoeDepth at an assumed {ZOEDEPTH_PER_S:.0f} images/s; CPU-side work "
               "(decoding, writing, five-crop) as on this CPU")
NOTES = {"weights": "downloaded once", "data": "downloaded and extracted (not timed here)",
         "depth": "CPU column: the embedded depth net, not ZoeDepth",
         "crop": "CPU stage, one process", "evaluate": "no CRF"}


def _per(clock: dict, label: str) -> float | None:
    return (clock.get(label) or {}).get("per_item")


def _seconds(clock: dict, label: str) -> float:
    """CPU seconds (records without CPU times: wall seconds)."""
    entry = clock.get(label)
    return entry.get("cpu_seconds", entry["seconds"]) if entry else 0.0


def _resumed_share(rec: dict) -> float:
    """The share of the files its last attempt wrote (a resumed attempt timed only its part)."""
    last = rec["attempts"][-1]
    before, after = last.get("files_before", 0), last.get("files_after", 0)
    return (after - before) / after if before and after > before else 1.0


def project(stage: str, rec: dict, dataset: str, original, f: float) -> dict:
    """{"cpu_s", "gpu_s", "disk_bytes", "note"} (None: not projected) of `stage`'s full run, from
    `rec` measured on `f` of the dataset; `original` = the paper profile."""
    d = rec.get("detail") or {}
    clock, full, disk = d.get("clock", {}), FACTS[dataset].counts, rec["disk"]["bytes"]
    if stage not in ("weights", "train", "evaluate"):  # outputs that grow with the data
        disk = disk / f if f else None
    out = {"cpu_s": None, "gpu_s": None, "disk_bytes": disk, "note": NOTES.get(stage, "")}
    if stage == "depth":
        out["cpu_s"] = _seconds(clock, "depth stage (embedded net)") / f / _resumed_share(rec)
        out["gpu_s"] = sum(full.values()) / ZOEDEPTH_PER_S
    elif stage == "crop":
        out["cpu_s"] = out["gpu_s"] = _seconds(clock, "five-crop") / f / _resumed_share(rec)
    elif stage == "knn":
        out.update(_project_knn(d, clock, full["train"] * 5, f))
    elif stage == "train":
        out.update(_project_train(d, clock, original, full["val"] * 5))
    elif stage == "evaluate":
        per = _per(clock, "forward + flip")
        out["cpu_s"] = per * full["val"] if per else None
        out["gpu_s"] = d["flops per image"] * full["val"] / (GPU_TFLOPS * 1e12)
    return out


def _project_knn(d: dict, clock: dict, n_full: int, f: float) -> dict:
    per_crop, block_s = _per(clock, "features (real backbone)"), _per(clock, "top-k block")
    n, dim, block = d["crops"], d["dim"], d["block"]
    # a block's scores and selection grow with N (block × N), the number of blocks too
    topk = block_s * (n_full / n) * math.ceil(n_full / block) if block_s else 0.0
    rest = _seconds(clock, "stage (stand-in features)") - _seconds(clock, "top-k block")
    cpu = (per_crop or 0.0) * n_full + topk + max(rest, 0.0) / f
    gpu = (d["flops per crop"] * n_full + 2.0 * n_full * n_full * dim) / (GPU_TFLOPS * 1e12)
    block_gb = min(block, n_full) * n_full * 4 / 1e9
    return {"cpu_s": cpu, "gpu_s": gpu + max(rest, 0.0) / f,
            "note": f"features {n_full:,} crops; score block {block_gb:.1f} GB at full N"}


def _project_train(d: dict, clock: dict, original, val_crops: int) -> dict:
    fwd, val = _per(clock, "train forward"), _per(clock, "validation forward")  # per crop
    head = _per(clock, "head step")  # per step
    batch, steps = original.batch_size, original.steps
    n_val = original.val_images or val_crops
    validations = steps // original.val_every + 2  # every val_every steps, before and at the end
    cpu = steps * ((fwd or 0.0) * 2 * batch + (head or 0.0) * batch / d["batch"])
    cpu += validations * n_val * (val or fwd or 0.0)
    gpu = (steps * 2 * batch + validations * n_val) * d["flops per crop"] / (GPU_TFLOPS * 1e12)
    return {"cpu_s": cpu, "gpu_s": gpu,
            "note": f"{steps:,} steps of batch {batch}; {validations} validations of "
                    f"{n_val:,} crops"}


def human_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "—"
    for unit, size, fmt, below in (("s", 1, ".1f", 120), ("min", 60, ".0f", 7200),
                                   ("h", 3600, ".1f", 3 * 86400)):
        if s < below:
            return f"{s / size:{fmt}} {unit}"
    return f"{s / 86400:.0f} d"


def human_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b:.0f} B"


def stage_rows(records: dict[str, dict], original) -> tuple[float, dict[str, dict]]:
    """F (the share of the full dataset really held, after rounding) and, per recorded stage,
    what was measured (summed over its attempts) and projected, to a tenth."""
    images = ((records.get("data") or {}).get("detail") or {}).get("images")
    full = sum(FACTS[original.dataset].counts.values())
    f = sum(images.values()) / full if images else float("nan")
    rows = {}
    for stage, rec in records.items():
        if rec.get("status") != "ok":
            rows[stage] = {"status": rec.get("status")}
            continue
        attempts, projected = rec["attempts"], project(stage, rec, original.dataset, original, f)
        rows[stage] = {"status": "ok", "files": rec["disk"]["files"],
                       "disk_bytes": rec["disk"]["bytes"],
                       "wall_s": round(sum(a["wall_s"] for a in attempts), 1),
                       "cpu_s": round(sum(a["cpu_s"] for a in attempts), 1),
                       "peak_rss_bytes": max(a["peak_rss_bytes"] for a in attempts),
                       "what_ran": rec["detail"].get("what ran", {}),
                       "projected": {k: round(v, 1) if isinstance(v, float) else v
                                     for k, v in projected.items()}}
    return f, rows


def table(f: float, rows: dict[str, dict]) -> str:
    """The markdown table a rehearsal prints: measured at F, then projected to F = 1."""
    lines = ["| stage | files | wall | CPU | peak RSS | disk | what ran | full run: this CPU | "
             "full run: one GPU | full disk | note |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for stage, row in rows.items():
        if row["status"] != "ok":
            lines.append(f"| {stage} | {row['status']} | | | | | | | | | |")
            continue
        p, what = row["projected"], "; ".join(f"{k}: {v}" for k, v in row["what_ran"].items())
        lines.append(f"| {stage} | {row['files']:,} | {human_seconds(row['wall_s'])} | "
                     f"{human_seconds(row['cpu_s'])} | {human_bytes(row['peak_rss_bytes'])} | "
                     f"{human_bytes(row['disk_bytes'])} | {what} | "
                     f"{human_seconds(p['cpu_s'])} | {human_seconds(p['gpu_s'])} | "
                     f"{human_bytes(p['disk_bytes'])} | {p['note']} |")
    return "\n".join(lines) + f"\n\nF = {f:.4g} of the full dataset. {ASSUMPTIONS}."


def publish(record: dict, stages: dict[str, dict], path: Path = SHIPPED) -> dict:
    """Keep a rehearsal (its REHEARSAL.json and stage records) as its profile's entry in `path`."""
    original, s = load_profile(record["profile source"]), record["settings"]
    f, rows = stage_rows(stages, original)
    batch = f" --batch {s['batch']}" if s.get("batch") else ""
    command = (f"python -m depthg_lib.rehearse --profile {original.name} --scale {s['scale']:g} "
               f"--sample {s['sample']} --steps {s['steps']}{batch} --out DIR")  # no local path
    entry = {"profile": original.name, "scale": s["scale"], "share": f, "settings": s,
             "machine": record["machine"], "commit": record["commit"],
             "date": record["updated"][:10], "command": command, "stages": rows}
    shipped = {**(load_json(path) if path.is_file() else {}), entry["profile"]: entry}
    save_json(path, dict(sorted(shipped.items())))
    return entry


def dry_run_lines(profile: Profile, path: Path = SHIPPED) -> list[str]:
    """The run's own disk and time for the fetch dry run, from the shipped rehearsal of the
    profile (of a `stego-*` twin: its DepthG profile's, the same data, backbone and sizes)."""
    name = shipped_name(profile)
    shipped = load_json(path) if path.is_file() else {}
    entry = shipped.get(name) or shipped.get(name.removeprefix("stego-"))
    if entry is None:
        return [f"the run itself: no rehearsal of {name} is recorded; estimate its disk and "
                f"time with `python -m depthg_lib.rehearse --profile {profile_arg(profile)}`"]
    how = ("measured at full size" if entry["scale"] == 1
           else f"measured at F = {entry['scale']:g} and scaled to the full size")
    lines = [f"the run itself (rehearsal on stand-ins, {how}, {entry['machine']}, "
             f"{entry['date']}; docs/scaling.md):"]
    disk = gpu = 0.0
    for stage, row in entry["stages"].items():
        if row.get("status") != "ok" or stage in ("weights", "data"):
            continue
        p = row["projected"]
        disk, gpu = disk + (p["disk_bytes"] or 0.0), gpu + (p["gpu_s"] or 0.0)
        lines.append(f"  {stage:<9} disk {human_bytes(p['disk_bytes']):>9}   one GPU "
                     f"{human_seconds(p['gpu_s']):>8}   this CPU {human_seconds(p['cpu_s']):>8}   "
                     f"peak RSS at F {human_bytes(row['peak_rss_bytes'])}")
    missing = [s for s in ("depth", "crop", "knn", "train", "evaluate")
               if (entry["stages"].get(s) or {}).get("status") != "ok"]
    lines.append(f"  outputs need about {human_bytes(disk)} beside the data; about "
                 f"{human_seconds(gpu)} on one GPU (projected: assumed throughput)"
                 + (f"; not rehearsed: {', '.join(missing)}" if missing else ""))
    return lines
