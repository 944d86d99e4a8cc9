"""Export a finished pretraining run as the shipped fp16 `.safetensors` + manifest entry
(sha256, size, architecture, training command, data, time and machine; the quality figures are
added by `benchmarks/embedded_quality.py --update-manifest`)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import embedded
from ..errors import DepthGError
from ..io import atomic_path, load_json, save_json, sha256_file

OBJECTIVES = {
    "vit": "self-supervised VICRegL-style: VICReg on the CLS tokens of two global views and on "
           "every pair of patches seeing the same scene point (exact crop correspondence); "
           "SynthScenes images only, labels never used",
    "depth": "supervised scale-and-shift-invariant L1 + multi-scale gradient matching on "
             "per-image min-max normalised SynthScenes ground-truth depth",
}


def vit_backbone_state(trainer_state: dict) -> dict[str, torch.Tensor]:
    """The ViT's weights in a pretraining checkpoint, named as in `build_embedded_vit`."""
    return {k.removeprefix("backbone."): v for k, v in trainer_state["student"].items()
            if k.startswith("backbone.")}


def _finished_run(kind: str, out: Path) -> dict:
    """The run's checkpoint, refused (with the command that fixes it) if absent or unfinished."""
    ckpt_path = out / "checkpoint.pt"
    if not ckpt_path.exists():
        raise DepthGError(f"{ckpt_path} does not exist: train first with "
                          f"`python -m depthg_lib.pretrain {kind} --out {out}`")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state, cfg = ckpt["trainer"], ckpt["trainer"]["config"]
    if state["step"] < cfg["steps"]:
        raise DepthGError(f"{ckpt_path} is at step {state['step']} of {cfg['steps']}; finish it "
                          f"with `python -m depthg_lib.pretrain {kind} --out {out} --resume`")
    return ckpt


def _entry(kind: str, out: Path, ckpt: dict, path: Path, model: torch.nn.Module) -> dict:
    """The manifest entry of the exported file: what it is and how it was trained."""
    state, cfg = ckpt["trainer"], ckpt["trainer"]["config"]
    command_file = out / "command.txt"
    train_cmd = command_file.read_text().strip() if command_file.exists() else None
    return {
        "file": path.name,
        "log": f"embedded_{kind}_log.csv" if (out / "log.csv").exists() else None,
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
        "training": {
            "steps": state["step"], "planned_steps": cfg["steps"], "seed": cfg["seed"],
            "data": {"dataset": "SynthScenes", "seed": cfg["data_seed"],
                     "size": cfg["data_size"], "n_train": ckpt.get("n_images", cfg["n_train"]),
                     "renderer_version": ckpt.get("renderer_version")},
            "wall_time_s": round(ckpt["elapsed_s"], 1),
            "machine": ckpt.get("machine"),
            "config": cfg,
        },
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quality": None,
    }


def export_run(kind: str, out: str | Path, weights_dir: str | Path | None = None) -> dict:
    """Write `<weights_dir>/<file>.safetensors` from `<out>/checkpoint.pt`; update the manifest."""
    out = Path(out)
    weights_dir = Path(weights_dir) if weights_dir else embedded.WEIGHTS_DIR
    ckpt = _finished_run(kind, out)
    sd = vit_backbone_state(ckpt["trainer"]) if kind == "vit" else ckpt["trainer"]["net"]
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    # the exported state must load into the library's architecture
    model = embedded.build_embedded_vit() if kind == "vit" else embedded.build_embedded_depth_net()
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True)
    path = weights_dir / embedded.WEIGHT_FILES[kind]
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"kind": kind, "format": "pt"})
    if (out / "log.csv").exists():  # the training curves ship beside the weights (A1 plots them)
        with atomic_path(weights_dir / f"embedded_{kind}_log.csv") as tmp:
            tmp.write_bytes((out / "log.csv").read_bytes())
    manifest_path = weights_dir / embedded.MANIFEST_NAME
    manifest = load_json(manifest_path) if manifest_path.exists() else {}
    manifest[kind] = _entry(kind, out, ckpt, path, model)
    save_json(manifest_path, manifest)
    return manifest[kind]
