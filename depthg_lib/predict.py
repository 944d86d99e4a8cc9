"""Segment any images with a trained DepthG head (`python -m depthg_lib.predict photo.jpg
folder/ --out predictions/`): upright as their EXIF says, as in evaluation at multiples of the
patch size; `--out` gets `<name>_label/_overlay/_ids.png` and a legend, which guards the folder
against outputs of another checkpoint or probe (`--force` replaces them)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt  # no backend switch: notebooks keep inline figures
import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .config import load_profile
from .crf import dense_crf, require_crf
from .data.base import IMAGE_SUFFIXES
from .env import device_arg, resolve_device
from .errors import DepthGError, run_cli
from .evalset import to_tensor
from .evaluate import assignment_file, probe_log_probs
from .io import atomic_path, ensure_dir, load_json, read_rgb, save_image, save_json, sha256_file
from .models import load_backbone
from .released import is_released
from .viz import colorize, label_palette, overlay
from .viz.evaluation import plot_legend

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "depthg_embedded.pt"


@dataclass
class Segmenter:
    """A loaded checkpoint ready to segment images, with what names its clusters."""

    model: object  # train.TrainedModel
    backbone: torch.nn.Module
    checkpoint: Path
    eval_res: int
    patch_size: int
    n_clusters: int
    cluster_to_class: list[int] | None = None
    class_names: list[str] | None = None
    class_colors: list[tuple[int, int, int]] | None = None

    def cluster_names(self) -> list[str]:
        """`cluster k → class` where a matching is known, else `cluster k`."""
        matched = self.cluster_to_class or [-1] * self.n_clusters
        return [f"cluster {k} → {self.class_names[c]}" if 0 <= c < len(self.class_names or [])
                else f"cluster {k}" for k, c in enumerate(matched[: self.n_clusters])]

    def palette(self) -> np.ndarray:
        """One colour per cluster: its matched class's colour when known, else a stable one."""
        pal = label_palette(self.n_clusters + len(self.class_names or []))[: self.n_clusters]
        if self.cluster_to_class is not None:
            classes = (np.asarray(self.class_colors, dtype=np.uint8) if self.class_colors
                       else label_palette(len(self.class_names or []) or self.n_clusters))
            for k, cls in enumerate(self.cluster_to_class[: self.n_clusters]):
                if 0 <= cls < len(classes):
                    pal[k] = classes[cls]
        return pal


def load_segmenter(checkpoint: str | os.PathLike | None = None, device: str = "cpu",
                   profile=None) -> Segmenter:
    """A checkpoint (default: the shipped one) and its backbone; refused if unfit for `profile`."""
    path = Path(checkpoint) if checkpoint is not None else DEFAULT_CHECKPOINT
    if not path.exists() and checkpoint is None:  # load_checkpoint names a missing --checkpoint
        raise DepthGError(f"the default checkpoint {path} is not there (it ships with the "
                          "library once trained). Train one with `python -m depthg_lib.train "
                          "--profile demo` and pass it with --checkpoint "
                          "runs/demo/train/checkpoints/final.pt")
    dev = resolve_device(device)
    model = load_checkpoint(path, profile=profile, device=dev)
    saved = model.meta["profile"]
    if profile is None or is_released(model):  # the weights it was trained with, or its own
        backbone = model.backbone()
    else:
        backbone = load_backbone(model.backbone_name, device=dev,
                                 weights=load_profile(profile).backbone_weights or None)
    side = assignment_file(path)  # written by evaluation
    found = load_json(side) if side.exists() else {}
    colors = found.get("class_colors")
    return Segmenter(
        model=model, backbone=backbone, checkpoint=path, eval_res=int(saved.get("eval_res", 320)),
        patch_size=backbone.patch_size, n_clusters=int(model.cluster_probe.clusters.shape[0]),
        cluster_to_class=[int(c) for c in found.get("cluster_to_class", [])] if found else None,
        class_names=list(found.get("class_names") or []) or None,
        class_colors=[tuple(c) for c in colors] if colors else None)


def working_size(height: int, width: int, patch: int, target: int) -> tuple[int, int]:
    """(h, w) multiples of `patch`, aspect kept: shorter side ≈ `target`, longer ≤ 2·target."""
    scale = min(target / min(height, width), 2 * target / max(height, width))
    return tuple(max(patch, int(round(side * scale / patch)) * patch) for side in (height, width))


@torch.no_grad()
def segment(seg: Segmenter, image, probe: str = "cluster", crf: bool = False) -> np.ndarray:
    """An RGB uint8 image → (H, W) uint8 cluster ids (or linear probe class ids) at its own size."""
    if probe not in ("cluster", "linear"):
        raise DepthGError(f"probe must be 'cluster' or 'linear', got {probe!r}")
    if crf:  # before the backbone runs, not after
        require_crf()
    rgb = np.asarray(image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DepthGError(f"segment takes an RGB uint8 image (H, W, 3), got {rgb.dtype} "
                          f"{rgb.shape}; read files with depthg_lib.io.read_rgb")
    height, width = rgb.shape[:2]
    h, w = working_size(height, width, seg.patch_size, seg.eval_res)
    work = _resized(rgb, h, w, Image.BILINEAR)
    x = to_tensor([work]).to(next(seg.model.head.parameters()).device)
    cluster, linear = probe_log_probs(seg.model, seg.backbone, x, (h, w))
    log_probs = (cluster if probe == "cluster" else linear)[0]
    labels = (dense_crf(work, log_probs.cpu().numpy()).argmax(0) if crf
              else log_probs.argmax(0).cpu().numpy())
    return _resized(labels.astype(np.uint8), height, width, Image.NEAREST)


def _resized(image: np.ndarray, height: int, width: int, method) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), method))


@dataclass
class PredictionReport:
    """What `predict_files` wrote and what it skipped (path, reason)."""

    out: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"segmented {len(self.written)} image(s) into {self.out}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


def collect_inputs(inputs: Iterable[str | os.PathLike], exclude: Path
                   ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to segment (folders expanded, sorted) and inputs skipped with the reason."""
    files, skipped, excluded = [], [], exclude.resolve()
    for path in map(Path, inputs):
        if path.is_dir() and path.resolve() == excluded:
            skipped.append((str(path), "the output folder itself"))
        elif path.is_dir():
            shown = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            found = [p for p in shown if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            skipped += [(str(p), "a sub-folder (not searched; pass it as an input to segment "
                                 "its images)") for p in shown
                        if p.is_dir() and p.resolve() != excluded]
            if not found:
                skipped.append((str(path), "folder holds no images (looked for "
                                           f"{', '.join(IMAGE_SUFFIXES)})"))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            skipped.append((str(path), "does not exist"))
    return files, skipped


def predict_files(inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
                  checkpoint: str | os.PathLike | None = None, device: str = "cpu",
                  probe: str = "cluster", crf: bool = False, profile=None,
                  progress: bool = True, force: bool = False,
                  owner: str | None = None) -> PredictionReport:
    """Segment image files and folders (not sub-folders) into `out`, listing inputs skipped."""
    out = Path(out)
    files, skipped = collect_inputs(inputs, out)
    if not files:
        why = "; ".join(f"{p}: {r}" for p, r in skipped) or "no inputs given"
        raise DepthGError(f"nothing to segment ({why})")
    ensure_dir(out, "--out folder")
    seg = load_segmenter(checkpoint, device, profile=profile)
    report = PredictionReport(out=out, skipped=skipped)
    palette = seg.palette()
    if probe == "linear":
        palette = (np.asarray(seg.class_colors, dtype=np.uint8) if seg.class_colors
                   else label_palette(seg.model.linear_probe.n_classes))
    legend = {**_legend(seg, palette, probe), **({"owner": owner} if owner else {})}
    earlier = _check_legend(out, legend, force)
    used: set[str] = set()
    for path in tqdm(files, desc="predict", disable=not progress):
        try:
            rgb = read_rgb(path, exif=True)
        except DepthGError:
            report.skipped.append((str(path), "not a readable image file"))
            continue
        labels = segment(seg, rgb, probe=probe, crf=crf)
        stem, k = path.stem, 1
        while stem in used:  # a.png and a.jpg: a, a_2
            k += 1
            stem = f"{path.stem}_{k}"
        used.add(stem)
        colour = colorize(labels, palette)
        save_image(out / f"{stem}_label.png", colour)
        save_image(out / f"{stem}_overlay.png", overlay(rgb, colour))
        save_image(out / f"{stem}_ids.png", labels)
        report.written.append(out / f"{stem}_label.png")
    if not report.written:
        raise DepthGError("no image could be segmented: " +
                          "; ".join(f"{p}: {r}" for p, r in report.skipped))
    fig = plot_legend(palette, [e["name"] for e in legend["entries"]], title=legend["title"])
    with atomic_path(out / "legend.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    save_json(out / "legend.json", {**legend, "outputs": sorted(set(earlier) | used)})
    return report


def _legend(seg: Segmenter, palette: np.ndarray, probe: str) -> dict:
    """What `legend.json` says: which checkpoint and probe, and each id's name and colour."""
    if probe == "linear":
        names = list(seg.class_names or [f"class {k}" for k in range(len(palette))])
        entries = [f"class {k}: {n}" if not n.startswith("class ") else n
                   for k, n in enumerate(names[: len(palette)])]
        title = "linear probe classes"
    else:
        entries = seg.cluster_names()
        title = "clusters" + (" (matched to classes)" if seg.cluster_to_class else "")
    ckpt = Path(seg.checkpoint)
    return {"checkpoint": str(ckpt),
            "checkpoint_sha256": sha256_file(ckpt) if ckpt.is_file() else str(ckpt),
            "probe": probe, "title": title,
            "entries": [{"id": k, "name": e, "color": [int(c) for c in palette[k]]}
                        for k, e in enumerate(entries)]}


def _check_legend(out: Path, legend: dict, force: bool) -> list[str]:
    """The image stems `out`'s legend lists if it says what `legend` says; another legend is
    refused, or with `force` (or the same owner) its outputs are deleted."""
    path = out / "legend.json"
    if not path.exists():
        return []
    old = load_json(path)
    if all(old.get(k) == legend[k] for k in ("checkpoint_sha256", "probe", "entries")):
        return list(old.get("outputs", []))
    if not force and not (legend.get("owner") and old.get("owner") == legend["owner"]):
        if old.get("checkpoint_sha256") != legend["checkpoint_sha256"]:
            what = f"the outputs of another checkpoint ({old.get('checkpoint', '?')})"
        elif old.get("probe") != legend["probe"]:
            what = "another probe"
        else:
            what = "other cluster names or colours"
        raise DepthGError(f"{path} describes {what}; its images would no longer match it. "
                          "Choose another --out folder, or pass --force to delete those "
                          "outputs and write new ones")
    for stem in old.get("outputs", []):
        for suffix in ("_label.png", "_overlay.png", "_ids.png"):
            (out / f"{stem}{suffix}").unlink(missing_ok=True)
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.predict",
                                     description="Segment images with a trained DepthG head.")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--out", required=True, help="folder for the label PNGs and overlays")
    parser.add_argument("--checkpoint", help=f"default: the shipped {DEFAULT_CHECKPOINT.name}")
    parser.add_argument("--profile", default=None,
                        help="check that the checkpoint fits this profile (backbone, code dim) "
                             "and take the backbone weights from it")
    parser.add_argument("--probe", choices=("cluster", "linear"), default="cluster")
    parser.add_argument("--crf", action="store_true", help="refine with a dense CRF")
    parser.add_argument("--device", default="cpu", type=device_arg,
                        help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--force", action="store_true",
                        help="replace the outputs of another checkpoint or probe in --out")
    print(predict_files(**vars(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    run_cli(main)
