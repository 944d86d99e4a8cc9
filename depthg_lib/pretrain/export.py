"""Export a finished pretraining run as the shipped fp16 `.safetensors` + manifest entry.

The manifest (`depthg_lib/weights/manifest.json`) describes exactly the files that ship: sha256,
size, architecture, the training command, data seed and size, training time and machine, and
(once `benchmarks/embedded_quality.py --update-manifest` has run) the quality figures.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import embedded
from ..errors import DepthGError
from ..io import atomic_path, save_json, sha256_file
from .common import DEFAULT_DATA_DIR, data_record

OBJECTIVES = {
    "vit": "self-supervised VICRegL-style: VICReg on the CLS tokens of two global views and on "
           "every pair of patches seeing the same scene point (exact crop correspondence); "
           "SynthScenes images only, labels never used",
    "depth": "supervised scale-and-shift-invariant L1 + multi-scale gradient matching on "
             "per-image min-max normalised SynthScenes ground-truth depth",
}


def _renderer_version(cfg: dict) -> int | None:
    """Renderer version of the default pretraining scenes, if they match the run's settings."""
    rec = data_record(DEFAULT_DATA_DIR)
    same = (rec.get("seed"), rec.get("size"), rec.get("n_train")) == (
        cfg["data_seed"], cfg["data_size"], cfg["n_train"])
    return rec.get("renderer_version") if same else None


def vit_backbone_state(trainer_state: dict) -> dict[str, torch.Tensor]:
    """The ViT's own weights in a pretraining checkpoint, keyed as `build_embedded_vit` names
    them (the expanders are left behind)."""
    prefix = "backbone."
    return {k[len(prefix):]: v for k, v in trainer_state["student"].items()
            if k.startswith(prefix)}


def load_checkpoint_vit(path: str | Path) -> tuple[torch.nn.Module, int]:
    """The embedded ViT (eval mode) with the backbone of a pretraining checkpoint, and its step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["trainer"]
    except (OSError, KeyError, RuntimeError) as err:
        raise DepthGError(f"{path} is not a pretraining checkpoint ({err}); pass the "
                          "checkpoint.pt of a `python -m depthg_lib.pretrain vit` run") from None
    vit = embedded.build_embedded_vit()
    vit.load_state_dict(vit_backbone_state(state), strict=True)
    return vit.eval(), state["step"]


def _exported_state(kind: str, trainer_state: dict) -> dict[str, torch.Tensor]:
    if kind == "vit":
        sd = vit_backbone_state(trainer_state)
    else:
        sd = dict(trainer_state["net"])
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def _finished_run(kind: str, out: Path, allow_partial: bool) -> dict:
    """The run's checkpoint, refused (with the command that fixes it) if absent or unfinished."""
    ckpt_path = out / "checkpoint.pt"
    if not ckpt_path.exists():
        raise DepthGError(f"{ckpt_path} does not exist: train first with "
                          f"`python -m depthg_lib.pretrain {kind} --out {out}`")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state, cfg = ckpt["trainer"], ckpt["trainer"]["config"]
    if state["step"] < cfg["steps"] and not allow_partial:
        raise DepthGError(
            f"{ckpt_path} is at step {state['step']} of {cfg['steps']}; finish it with "
            f"`python -m depthg_lib.pretrain {kind} --out {out} --resume`, or pass "
            "--allow-partial to export it anyway")
    return ckpt


def _training_record(ckpt: dict) -> dict:
    """What the manifest says about how the weights were trained."""
    state, cfg = ckpt["trainer"], ckpt["trainer"]["config"]
    return {
        "steps": state["step"], "planned_steps": cfg["steps"], "seed": cfg["seed"],
        "data": {"dataset": "SynthScenes", "seed": cfg["data_seed"],
                 "size": cfg["data_size"], "n_train": ckpt.get("n_images", cfg["n_train"]),
                 "renderer_version": ckpt.get("renderer_version", _renderer_version(cfg))},
        "wall_time_s": round(ckpt["elapsed_s"], 1),
        "machine": ckpt.get("machine"),
        "config": cfg,
    }


def export_run(kind: str, out: str | Path, weights_dir: str | Path | None = None,
               allow_partial: bool = False) -> dict:
    """Write `<weights_dir>/<file>.safetensors` from `<out>/checkpoint.pt`; update the manifest."""
    out = Path(out)
    weights_dir = Path(weights_dir) if weights_dir else embedded.WEIGHTS_DIR
    ckpt = _finished_run(kind, out, allow_partial)
    sd = _exported_state(kind, ckpt["trainer"])
    # the exported state must load into the library's architecture
    model = embedded.build_embedded_vit() if kind == "vit" else embedded.build_embedded_depth_net()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True)
    path = weights_dir / embedded.WEIGHT_FILES[kind]
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"kind": kind, "format": "pt"})
    # the training curves ship beside the weights (appendix A1 plots them)
    log_name = f"embedded_{kind}_log.csv"
    if (out / "log.csv").exists():
        with atomic_path(weights_dir / log_name) as tmp:
            tmp.write_bytes((out / "log.csv").read_bytes())
    command_file = out / "command.txt"
    train_cmd = command_file.read_text().strip() if command_file.exists() else None
    entry = {
        "file": path.name,
        "log": log_name if (out / "log.csv").exists() else None,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "dtype": "float16",
        "architecture": (embedded.VIT_CONFIG if kind == "vit"
                         else {"class": "EmbeddedDepthNet", **embedded.DEPTH_CONFIG}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "normalisation": {"mean": embedded.EMBEDDED_MEAN, "std": embedded.EMBEDDED_STD},
        "objective": OBJECTIVES[kind],
        "command": f"{train_cmd} && python -m depthg_lib.pretrain export {kind} --out {out}"
                   if train_cmd else None,
        "training": _training_record(ckpt),
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quality": None,
    }
    manifest_path = weights_dir / embedded.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[kind] = entry
    save_json(manifest_path, manifest)
    return entry


def record_quality(kind: str, quality: dict, weights_dir: str | Path | None = None) -> None:
    """Store benchmark figures in the manifest entry of the weights they were measured on."""
    weights_dir = Path(weights_dir) if weights_dir else embedded.WEIGHTS_DIR
    manifest_path = weights_dir / embedded.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    entry = manifest[kind]
    if sha256_file(weights_dir / entry["file"]) != entry["sha256"]:
        raise DepthGError(f"{weights_dir / entry['file']} does not match {manifest_path}; "
                          "re-export before recording quality figures")
    entry["quality"] = {**quality, "weights_sha256": entry["sha256"]}
    save_json(manifest_path, manifest)
