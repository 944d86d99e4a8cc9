"""Ship a finished study's trained heads with the repository (weights only, float32), so that
`python -m depthg_lib.study --report-seed S` and chapter 06 score them without training
(`depthg_lib.study.shipped` reads them): `depthg_lib/weights/study/<head id>.safetensors`, the
id a digest of all the head depends on (`Study.head_identity`), and a manifest entry each.

    python tools/study_ship.py --profile study --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from depthg_lib.checkpoint import read_checkpoint
from depthg_lib.config import load_profile
from depthg_lib.errors import run_cli
from depthg_lib.io import atomic_path, load_json, save_json
from depthg_lib.study.runner import Study
from depthg_lib.study.shipped import MANIFEST, PARTS, SHIPPED_DIR
from depthg_lib.study.splits import Setting


def ship_head(ckpt: Path, head_id: str, info: dict, folder: Path) -> Path:
    """Write the head and probes of a finished run as safetensors, and its manifest entry."""
    state = read_checkpoint(ckpt)
    # float32: fp16 weights moved a tiny study's mIoU in the first decimal (tested); the
    # study's ~40 heads take ~5 MB as they are
    tensors = {f"{part}.{k}": v.detach().to(torch.float32).contiguous()
               for part in PARTS for k, v in state[part].items()}
    out = folder / f"{head_id}.safetensors"  # as study.shipped.load_shipped reads it
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp))
    manifest = load_json(folder / MANIFEST) if (folder / MANIFEST).exists() else {"heads": {}}
    manifest["heads"][head_id] = {
        **info, "backbone": state["backbone"], "backbone_dim": state["backbone_dim"],
        "code_dim": state["code_dim"], "n_classes": state["n_classes"],
        "extra_clusters": state.get("extra_clusters", 0),
        "dropout": state["profile"].get("dropout", True),
        "nonlinear": state["profile"].get("nonlinear", True), "dtype": "float32"}
    save_json(folder / MANIFEST, manifest)
    return out


def ship_heads(study: Study, folder: Path = SHIPPED_DIR) -> dict:
    """Copy every current head of `study` (its arms and the regime check's runs) to `folder`,
    named by its head identity; rows of older settings are left out."""
    shipped = {}
    for row in study.store.rows:
        if row["kind"] not in ("arm", "regime"):
            continue
        base, _, nuisance = row["knob"].partition("+nuisance")
        knob = Setting(float(base), float(nuisance) if nuisance else 0.0)
        regime = "" if row["kind"] == "arm" else row.get("regime", "")
        if row["id"] != study.arm_identity(row["name"], knob, row["seed"], regime):
            continue
        head_id = study.head_identity(row["name"], knob, row["seed"], regime)
        ckpt = Path(row["run_dir"]) / "checkpoints" / "final.pt"
        if ckpt.exists():
            ship_head(ckpt, head_id, {"name": row["name"], "knob": row["knob"],
                                      "seed": row["seed"], "regime": regime or "study",
                                      "steps": row.get("steps"), "unsup": row["unsup"],
                                      "linear": row["linear"]}, folder)
            shipped[head_id] = row["name"]
    return {"shipped": len(shipped)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/study_ship.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="study")
    parser.add_argument("--out", required=True, help="the study's folder (--out of the study)")
    args = parser.parse_args(argv)
    study = Study(load_profile(args.profile), Path(args.out), 1, "cpu", False, 100, "ship")
    print(f"{ship_heads(study)['shipped']} heads shipped to {SHIPPED_DIR}")
    return 0


if __name__ == "__main__":
    run_cli(main)
