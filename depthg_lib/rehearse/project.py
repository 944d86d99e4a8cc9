"""From what a rehearsal measured at scale F to the full run: on this CPU, and on the
profile's device (one CUDA GPU). The CPU projection scales measured costs by how each stage
grows (docs/scaling.md); the GPU projection divides FLOPs by an *assumed* throughput, and the
depth network's by an assumed image rate — both are assumptions, named in every table."""

from __future__ import annotations

import math

from .standin import FACTS

GPU_TFLOPS = 100.0  # effective fp32/TF32 throughput of one H100 on ViT forwards (assumed)
ZOEDEPTH_PER_S = 20.0  # ZoeDepth images per second on one H100 (assumed; docs/scaling.md)
ASSUMPTIONS = (f"GPU column: FLOPs at an assumed {GPU_TFLOPS:.0f} TFLOP/s effective on one "
               f"H100 and ZoeDepth at an assumed {ZOEDEPTH_PER_S:.0f} images/s; CPU-side work "
               "(decoding, writing, five-crop) as on this CPU")


NOTES = {"weights": "downloaded once", "data": "downloaded and extracted (not timed here)",
         "depth": "CPU column: the embedded depth net, not ZoeDepth",
         "crop": "CPU stage, one process", "evaluate": "no CRF"}


def _per(clock: dict, label: str) -> float | None:
    """CPU seconds per item (records without CPU times: wall seconds)."""
    entry = clock.get(label)
    return entry["per_item"] if entry else None


def _seconds(clock: dict, label: str) -> float:
    entry = clock.get(label)
    return entry.get("cpu_seconds", entry["seconds"]) if entry else 0.0


def scale_of(records: dict[str, dict], dataset: str) -> float:
    """The share of the full dataset this rehearsal really held (after rounding)."""
    images = ((records.get("data") or {}).get("detail") or {}).get("images")
    return sum(images.values()) / sum(FACTS[dataset].counts.values()) if images else float("nan")


def totals(rec: dict) -> tuple[float, float, int]:
    """A stage's wall and CPU seconds summed over its attempts, and their peak RSS."""
    attempts = rec["attempts"]
    return (sum(a["wall_s"] for a in attempts), sum(a["cpu_s"] for a in attempts),
            max(a["peak_rss_bytes"] for a in attempts))


def project(stage: str, rec: dict, dataset: str, original, f: float) -> dict:
    """{"cpu_s", "gpu_s", "disk_bytes", "note"} of the full run of `stage`; None = not
    projected. `f` = share of the dataset rehearsed; `original` = the paper profile."""
    d = rec.get("detail") or {}
    clock = d.get("clock", {})
    full = FACTS[dataset].counts
    disk = rec.get("disk", {}).get("bytes", 0)
    grows = stage not in ("weights", "train", "evaluate")  # outputs that grow with the data
    out = {"cpu_s": None, "gpu_s": None, "disk_bytes": (disk / f if f else None) if grows else disk,
           "note": NOTES.get(stage, "")}
    if stage == "depth":
        out["cpu_s"] = _seconds(clock, "depth stage (embedded net)") / f
        out["gpu_s"] = sum(full.values()) / ZOEDEPTH_PER_S
    elif stage == "crop":
        out["cpu_s"] = out["gpu_s"] = _seconds(clock, "five-crop") / f
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
    per_crop = _per(clock, "features (real backbone)")
    block_s = _per(clock, "top-k block")
    n, dim, block = d["crops"], d["dim"], d["block"]
    blocks_full = math.ceil(n_full / block)
    # a block's scores and selection grow with N (block × N), the number of blocks too
    topk = block_s * (n_full / n) * blocks_full if block_s else 0.0
    rest = _seconds(clock, "stage (stand-in features)") - _seconds(clock, "top-k block")
    cpu = (per_crop or 0.0) * n_full + topk + max(rest, 0.0) / f
    gpu = (d["flops per crop"] * n_full + 2.0 * n_full * n_full * dim) / (GPU_TFLOPS * 1e12)
    block_gb = min(block, n_full) * n_full * 4 / 1e9
    return {"cpu_s": cpu, "gpu_s": gpu + max(rest, 0.0) / f,
            "note": f"features {n_full:,} crops; score block {block_gb:.1f} GB at full N"}


def _project_train(d: dict, clock: dict, original, val_crops: int) -> dict:
    fwd = _per(clock, "train forward")  # seconds per crop
    head = _per(clock, "head step")  # seconds per step
    val = _per(clock, "validation forward")
    batch, steps = original.batch_size, original.steps
    n_val = original.val_images or val_crops
    validations = steps // original.val_every + 2  # every val_every steps, before and at the end
    cpu = steps * ((fwd or 0.0) * 2 * batch + (head or 0.0) * batch / d["batch"])
    cpu += validations * n_val * (val or fwd or 0.0)
    flops = d["flops per crop"]
    gpu = (steps * 2 * batch + validations * n_val) * flops / (GPU_TFLOPS * 1e12)
    return {"cpu_s": cpu, "gpu_s": gpu,
            "note": f"{steps:,} steps of batch {batch}; {validations} validations of "
                    f"{n_val:,} crops"}


def human_seconds(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


def human_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b:.0f} B"


def table(records: dict[str, dict], original) -> str:
    """The markdown table a rehearsal prints: measured at F, then projected to F = 1."""
    f = scale_of(records, original.dataset)
    rows = ["| stage | files | wall | CPU | peak RSS | disk | what ran | full run: this CPU | "
            "full run: one GPU | full disk | note |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for stage, rec in records.items():
        if rec.get("status") != "ok":
            rows.append(f"| {stage} | {rec.get('status')} | | | | | | | | | |")
            continue
        wall, cpu, rss = totals(rec)
        what = "; ".join(f"{k}: {v}" for k, v in rec["detail"].get("what ran", {}).items())
        p = project(stage, rec, original.dataset, original, f)
        rows.append(f"| {stage} | {rec['disk']['files']:,} | {human_seconds(wall)} | "
                    f"{human_seconds(cpu)} | {human_bytes(rss)} | "
                    f"{human_bytes(rec['disk']['bytes'])} | {what} | "
                    f"{human_seconds(p['cpu_s'])} | {human_seconds(p['gpu_s'])} | "
                    f"{human_bytes(p['disk_bytes'])} | {p['note']} |")
    return "\n".join(rows) + f"\n\nF = {f:.4g} of the full dataset. {ASSUMPTIONS}."
