"""The study's trained heads, shipped with the repository (weights only, float32), so that
`--report-seed S` scores them without training: `weights/study/<head id>.safetensors`, the id a
digest of all the head depends on (`Study.head_identity`), the same on a fresh clone."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import TrainedModel, read_checkpoint
from ..errors import DepthGError
from ..io import atomic_path, load_json, save_json
from ..models import DepthGModel
from .splits import Setting

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights" / "study"
MANIFEST = "manifest.json"
PARTS = ("head", "cluster_probe", "linear_probe")


def shipped_path(head_id: str, folder: Path = SHIPPED_DIR) -> Path:
    return folder / f"{head_id}.safetensors"


def ship_head(ckpt: Path, head_id: str, info: dict, folder: Path = SHIPPED_DIR) -> Path:
    """Write the head and probes of a finished run as safetensors, and its manifest entry."""
    from safetensors.torch import save_file

    state = read_checkpoint(ckpt)
    # float32: fp16 weights moved a tiny study's mIoU in the first decimal (tested); the
    # study's ~40 heads take ~5 MB as they are
    tensors = {f"{part}.{k}": v.detach().to(torch.float32).contiguous()
               for part in PARTS for k, v in state[part].items()}
    out = shipped_path(head_id, folder)
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


def load_shipped(head_id: str, folder: Path = SHIPPED_DIR) -> TrainedModel | None:
    """The shipped head of this id, or None."""
    path = shipped_path(head_id, folder)
    if not path.exists():
        return None
    from safetensors.torch import load_file

    manifest = load_json(folder / MANIFEST)
    info = manifest.get("heads", {}).get(head_id)
    if info is None:
        raise DepthGError(f"{path} has no entry in {folder / MANIFEST}; ship the study's heads "
                          "again: python -m depthg_lib.study --profile study --ship")
    tensors = load_file(str(path))
    model = DepthGModel(info["backbone_dim"], info["code_dim"], info["n_classes"],
                        info["extra_clusters"], info["dropout"], info["nonlinear"])
    for part in PARTS:
        getattr(model, part).load_state_dict({k.removeprefix(f"{part}."): v.float()
                                              for k, v in tensors.items()
                                              if k.startswith(f"{part}.")})
    model.eval()
    return TrainedModel(model.head, model.cluster_probe, model.linear_probe, info["backbone"],
                        {"profile": {}, "path": str(path), "shipped": True})


def ship_heads(study) -> dict:
    """Copy every current head of this study (its arms and the regime check's runs) to
    depthg_lib/weights/study, named by its head identity."""
    shipped = {}
    for row in study.store.rows:
        if row["kind"] not in ("arm", "regime"):
            continue
        knob = Setting.from_key(row["knob"])
        regime = "" if row["kind"] == "arm" else row.get("regime", "")
        if row["id"] != study.arm_identity(row["name"], knob, row["seed"], regime):
            continue  # a row of older settings
        head_id = study.head_identity(row["name"], knob, row["seed"], regime)
        ckpt = Path(row["run_dir"]) / "checkpoints" / "final.pt"
        if ckpt.exists():
            ship_head(ckpt, head_id, {"name": row["name"], "knob": row["knob"],
                                      "seed": row["seed"], "regime": regime or "study",
                                      "steps": row.get("steps"), "unsup": row["unsup"],
                                      "linear": row["linear"]})
            shipped[head_id] = row["name"]
    return {"shipped": len(shipped)}
