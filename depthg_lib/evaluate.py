"""Chapter 05: a trained head's unsupervised (Hungarian) and linear-probe scores as released
(docs/method.md §9), written with the record of what was scored to a folder the profile owns
(`eval_dir_for`); the cluster → class matching goes beside the checkpoint for `predict`."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import time
from pathlib import Path

import matplotlib.pyplot as plt  # no backend switch: notebooks keep inline figures
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint
from .config import Profile, load_profile, positive_int, profile_arg, runs_root
from .crf import CRFRunner, require_crf
from .env import device_arg, resolve_device
from .errors import DepthGError, run_cli
from .evalset import as_targets, class_names, make_loader, open_split, split_inputs, to_tensor
from .io import INPUTS_KEY, as_recorded, load_json, save_json, save_npz, sha256_file, stage_lock
from .metrics import confusion_histogram, scores
from .models import load_backbone, profile_weights_identity
from .released import is_released
from .viz import class_palette
from .viz import evaluation as viz

CLUSTER_ALPHA = 2.0  # docs/method.md §9: log-softmax of cluster similarities × 2
N_EXAMPLES = 4  # example predictions kept for the chapter's figure


@torch.no_grad()
def flip_averaged_codes(backbone, head, images: torch.Tensor) -> torch.Tensor:
    """Codes of the images averaged with those of their mirror images, mirrored back (§9)."""
    both = torch.cat([images, images.flip(dims=[3])])
    if both.is_cuda:  # bf16 backbone on the GPU, as in training (features.featurize)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            feats = backbone(both.contiguous(memory_format=torch.channels_last)).float()
    else:
        feats = backbone(both)
    plain, mirrored = head(feats).float().chunk(2)
    return (plain + mirrored.flip(dims=[3])) / 2


@torch.no_grad()
def probe_log_probs(model, backbone, images: torch.Tensor, size: tuple[int, int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(cluster, linear) log-probabilities at `size` for a batch of [0,1] images (§9); the
    codes are upsampled bilinearly *before* the probes, as released."""
    code = flip_averaged_codes(backbone, model.head, images)
    code = F.interpolate(code, size=size, mode="bilinear", align_corners=False)
    return (model.cluster_probe(code, alpha=CLUSTER_ALPHA, log_probs=True),
            torch.log_softmax(model.linear_probe(code), dim=1))


PACKAGE_DIR = Path(__file__).resolve().parent


def default_checkpoint(profile: Profile) -> Path:
    return profile.paths.train_dir / "checkpoints" / "final.pt"


def in_package(path: str | Path) -> bool:  # the shipped head: never written beside
    return Path(path).resolve().is_relative_to(PACKAGE_DIR)


def eval_dir_for(profile: Profile, checkpoint: str | Path | None,
                 trained_with: str | None = None) -> Path:
    """Where evaluating `checkpoint` with `profile` writes, always a folder the profile owns: its
    own checkpoint → `runs/<profile>/eval`, another run's `X/checkpoints/final.pt` → `X/eval`,
    `Y/model.pt` → `Y/eval_model`, the shipped head or another profile's → `<run>/eval_<label>`."""
    ckpt = Path(checkpoint or default_checkpoint(profile)).resolve()
    if ckpt == default_checkpoint(profile).resolve():
        return profile.paths.eval_dir
    if in_package(ckpt):
        return profile.paths.run_dir / f"eval_{ckpt.stem}"
    if is_foreign(profile, ckpt, trained_with):  # e.g. `eval_other-train-final`
        runs = runs_root().resolve()
        parts = ckpt.relative_to(runs).parts if ckpt.is_relative_to(runs) else ckpt.parts[-4:]
        parts = [p for p in parts[:-1] if p not in ("checkpoints", "/")] + [ckpt.stem]
        label = "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", p) for p in parts[-4:])
        return profile.paths.run_dir / f"eval_{label}"
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "eval"
    return ckpt.parent / f"eval_{ckpt.stem}"


def is_foreign(profile: Profile, checkpoint: str | Path, trained_with: str | None = None) -> bool:
    """A checkpoint of another profile's run: trained with another profile or in `runs/<other>/`."""
    if trained_with is not None and trained_with != profile.name:
        return True
    ckpt, runs = Path(checkpoint).resolve(), runs_root().resolve()
    return ckpt.is_relative_to(runs) and not ckpt.is_relative_to(profile.paths.run_dir.resolve())


def assignment_file(checkpoint: str | Path) -> Path:  # the matching predict reads
    return Path(checkpoint).with_suffix(".classes.json")


def _load_model(profile: Profile, checkpoint: str | Path | None, device: torch.device):
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(profile)
    if not path.exists():
        hint = (f"train it first: python -m depthg_lib.train --profile {profile_arg(profile)}"
                if checkpoint is None else "check the path given with --checkpoint")
        raise DepthGError(f"checkpoint {path} does not exist; {hint}")
    model = load_checkpoint(path, profile=profile, device=device)  # in eval mode on `device`
    if is_released(model):  # a released checkpoint brings its own backbone (a loader, as below)
        return path, model, model.backbone
    weights = profile.backbone_weights or None  # loaded only to score: a reused result needs none
    return path, model, lambda: load_backbone(profile.backbone, weights, device)


def evaluate(profile: Profile | str, checkpoint: str | Path | None = None, crf: bool = False,
             device: str = "auto", split: str = "val", max_images: int | None = None,
             progress: bool = True, out_dir: str | Path | None = None, write: bool = True,
             force: bool = False) -> dict:
    """Score a checkpoint on a labelled split (§9): `metrics.json`'s content, `arrays.npz`'s under
    `"arrays"`; one recorded for the same settings and inputs is reused unless `force`."""
    profile = load_profile(profile)
    if max_images is not None and max_images < 1:
        raise DepthGError(f"max_images must be at least 1, got {max_images}")
    if crf:
        require_crf()
    dev = resolve_device(device)
    reader, names = open_split(profile, split)  # labels checked here
    names = names[:max_images]
    path, model, backbone = _load_model(profile, checkpoint, dev)  # backbone(): it, loaded
    if not write:
        return _score(profile, reader, split, names, path, model, backbone(), dev, crf, progress)
    meta = {} if is_released(model) else getattr(model, "meta", None) or {}
    trained_with = (meta.get("profile") or {}).get("name")
    foreign = is_foreign(profile, path, trained_with)
    out = Path(out_dir or eval_dir_for(profile, checkpoint, trained_with))
    record = _record(profile, reader, split, names, path, crf, max_images, dev)
    with stage_lock(out, "evaluate"):
        if not force and (done := _reuse(out, record)) is not None:
            return done
        (out / "evaluate.json").unlink(missing_ok=True)  # outputs below belong to no record yet
        metrics = _score(profile, reader, split, names, path, model, backbone(), dev, crf, progress)
        arrays = metrics.pop("arrays")
        metrics["figures"] = _write_figures(out, metrics, arrays, profile, reader)
        save_json(out / "metrics.json", metrics)
        save_npz(out / "arrays.npz", **{k: v for k, v in arrays.items() if k != "examples"},
                 **{f"example_{k}": v for k, v in arrays["examples"].items() if v is not None})
        if max_images is None:  # the matching for predict: beside the checkpoint if we may
            side = assignment_file(path)
            if foreign or in_package(path) or not os.access(side.parent, os.W_OK | os.X_OK):
                side = out / side.name
            save_json(side, {"cluster_to_class": metrics["unsupervised"]["cluster_to_class"],
                             "class_names": metrics["class_names"],
                             "class_colors": class_palette(reader, profile.n_classes).tolist(),
                             "dataset": profile.dataset, "split": split,
                             "unsupervised_miou": metrics["unsupervised"]["miou"]})
        save_json(out / "evaluate.json", record)  # last: it vouches for everything above
    return {**metrics, "out_dir": str(out), "arrays": arrays}


def _record(profile, reader, split, names, path, crf, max_images, dev) -> dict:
    """What a result depends on: settings, and digests of the checkpoint and the split."""
    settings = {"stage": "evaluate", "checkpoint": str(path), "split": split,
                "n_images": len(names), "max_images": max_images, "crf": bool(crf),
                "device": dev.type, "dataset": profile.dataset,
                "dataset_dir": str(profile.paths.dataset_dir), "eval_res": profile.eval_res,
                "fidelity": profile.fidelity, "n_classes": profile.n_classes,
                "backbone": profile.backbone, "backbone_weights": profile.backbone_weights,
                "backbone_weights_identity": profile_weights_identity(profile)}
    inputs = {"checkpoint": {"what": f"the checkpoint {path}", "files": 1,
                             "digest": sha256_file(path)}, **split_inputs(reader, split)}
    return as_recorded({**settings, INPUTS_KEY: inputs})


def _reuse(out: Path, record: dict) -> dict | None:
    """The stored result in `out` if its record is `record` and its files are whole."""
    files = [out / f for f in ("evaluate.json", "metrics.json", "arrays.npz")]
    if not all(f.exists() for f in files) or load_json(files[0]) != record:
        return None
    try:
        with np.load(files[2]) as stored:
            flat = {k: stored[k] for k in stored.files}
    except (OSError, ValueError):
        return None
    arrays = {k: flat[k] for k in ("cluster_histogram", "linear_histogram", "matched_histogram")}
    kinds = ("image", "label", "cluster", "linear")
    arrays["examples"] = {k: flat.get(f"example_{k}") for k in kinds}
    return {**load_json(files[1]), "out_dir": str(out), "arrays": arrays, "reused": True}


def _predict(model, backbone, images, labels, dev, runner) -> tuple[np.ndarray, np.ndarray]:
    """Both probes' label maps for a batch, refined by the CRF when a `runner` is given."""
    x = to_tensor(images).to(dev)
    log_probs = probe_log_probs(model, backbone, x, labels.shape[1:])  # cluster, linear
    if runner is None:
        return tuple(lp.argmax(1).cpu().numpy() for lp in log_probs)
    maps = [m for lp in log_probs for m in lp.float().cpu().numpy()]  # both in one pool round
    return tuple(np.split(runner(list(images) * 2, maps, argmax=True), 2))


def _score(profile, reader, split, names, path, model, backbone, dev, crf, progress) -> dict:
    """The metrics of one pass over the split, with their arrays (nothing written)."""
    n = profile.n_classes
    extra = max(0, int(model.cluster_probe.clusters.shape[0]) - n)
    drop_extra = profile.fidelity == "released"  # docs/method.md §9: as released
    cluster_hist = np.zeros((n + extra, n), dtype=np.int64)
    linear_hist = np.zeros((n, n), dtype=np.int64)
    examples = {"image": [], "label": [], "cluster": [], "linear": []}
    started = time.time()
    with CRFRunner() if crf else contextlib.nullcontext() as runner:  # DEPTHG_CRF_WORKERS
        loader = make_loader(profile, reader, split, names, 16 if dev.type == "cuda" else 4)
        for images, labels in tqdm(loader, desc=f"evaluate {split}", disable=not progress):
            cluster_pred, linear_pred = _predict(model, backbone, images, labels, dev, runner)
            target = as_targets(labels, n)
            cluster_hist += confusion_histogram(cluster_pred, target, n, extra, drop_extra)
            linear_hist += confusion_histogram(linear_pred, target, n)
            for i in range(min(len(images), N_EXAMPLES - len(examples["image"]))):
                for key, arr in zip(examples, (images, labels, cluster_pred, linear_pred)):
                    examples[key].append(np.asarray(arr[i]))
    seconds = round(time.time() - started, 2)
    unsup, linear = scores(cluster_hist, hungarian=True), scores(linear_hist, hungarian=False)
    classes = class_names(reader, n)
    arrays = {"cluster_histogram": cluster_hist, "linear_histogram": linear_hist,
              "matched_histogram": unsup["histogram"],
              "examples": {k: np.stack(v) if v else None for k, v in examples.items()}}
    return {"profile": profile.name, "fidelity": profile.fidelity, "checkpoint": str(path),
            "checkpoint_step": (getattr(model, "meta", {}) or {}).get("step"),
            "backbone": profile.backbone, "dataset": profile.dataset, "split": split,
            "n_images": len(names), "eval_res": profile.eval_res, "crf": bool(crf),
            "crf_fell_back": bool(runner.fell_back) if runner is not None else None,
            "device": str(dev), "seconds": seconds, "class_names": classes,
            "unsupervised": _summary(unsup, classes, cluster_hist),
            "linear": _summary(linear, classes, linear_hist),
            "profile_settings": dataclasses.asdict(profile), "arrays": arrays}


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)


def _summary(result: dict, class_names: list[str], histogram: np.ndarray) -> dict:
    return {"acc": _num(result["acc"]), "miou": _num(result["miou"]),
            "iou": {name: _num(v) for name, v in zip(class_names, result["iou"])},
            "cluster_to_class": [int(c) for c in result["cluster_to_class"]],
            "histogram": histogram.tolist()}


def _write_figures(out: Path, metrics: dict, arrays: dict, profile: Profile, reader) -> list[str]:
    names = metrics["class_names"]
    matched, examples = arrays["matched_histogram"], arrays["examples"]
    ious = {"unsupervised": metrics["unsupervised"]["iou"], "linear": metrics["linear"]["iou"]}
    figs = {"confusion.png": viz.plot_confusion(matched[: len(names), : len(names)], names,
                                                title="unsupervised (clusters matched to classes)"),
            "class_iou.png": viz.plot_class_iou(ious)}
    if examples["image"] is not None:
        figs["examples.png"] = viz.plot_examples(
            *(list(examples[k]) for k in ("image", "label", "cluster", "linear")),
            cluster_to_class=np.asarray(metrics["unsupervised"]["cluster_to_class"]),
            palette=class_palette(reader, profile.n_classes))
    for fname, fig in figs.items():
        fig.savefig(out / fname, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return list(figs)


@torch.no_grad()
def kmeans_baseline(profile: Profile | str, split: str = "val", max_images: int | None = None,
                    device: str = "auto", seed: int = 0, progress: bool = True,
                    max_fit_points: int = 100_000) -> dict:
    """k-means on raw patch features, pixels taking the nearest centroid: the no-training floor."""
    profile, dev = load_profile(profile), resolve_device(device)
    reader, names = open_split(profile, split)  # labels checked here
    names = names[:max_images]
    backbone = load_backbone(profile.backbone, profile.backbone_weights or None, dev)
    batch_size, n = 16 if dev.type == "cuda" else 4, profile.n_classes
    rng = np.random.default_rng(seed)

    def features(images):
        return F.normalize(backbone(to_tensor(images).to(dev)).float(), dim=1)

    per_image = max(1, max_fit_points // len(names))
    points = []
    for images, _ in tqdm(make_loader(profile, reader, split, names, batch_size),
                          desc="k-means: fit features", disable=not progress):
        f = features(images).permute(0, 2, 3, 1).flatten(1, 2).cpu().numpy()
        points += [p[rng.choice(len(p), min(per_image, len(p)), replace=False)] for p in f]
    km = KMeans(n_clusters=n, n_init=3, random_state=seed).fit(np.concatenate(points))
    centroids = F.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1).to(dev)
    hist = np.zeros((n, n), dtype=np.int64)
    for images, labels in tqdm(make_loader(profile, reader, split, names, batch_size),
                               desc="k-means: predict", disable=not progress):
        sim = torch.einsum("bchw,kc->bkhw", features(images), centroids)
        sim = F.interpolate(sim, size=labels.shape[1:], mode="bilinear", align_corners=False)
        hist += confusion_histogram(sim.argmax(1).cpu().numpy(), as_targets(labels, n), n)
    return {"method": "kmeans", "profile": profile.name, "split": split, "n_images": len(names),
            **_summary(scores(hist, hungarian=True), class_names(reader, n), hist)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.evaluate",
                                     description="Score a trained DepthG head (docs/method.md §9).")
    parser.add_argument("--profile", required=True, help="profile name or YAML path")
    parser.add_argument("--checkpoint", help="default: runs/<profile>/train/checkpoints/final.pt")
    parser.add_argument("--crf", action="store_true", help="refine with a dense CRF")
    parser.add_argument("--split", default="val")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--max-images", type=positive_int, default=None,
                        help="score only the first N images of the split")
    parser.add_argument("--out", dest="out_dir", help="output folder (default: the run's eval/)")
    parser.add_argument("--force", action="store_true",
                        help="score again even when nothing changed since the last run")
    metrics = evaluate(**vars(parser.parse_args(argv)))
    print(f"{metrics['profile']} {metrics['split']} ({metrics['n_images']} images, "
          f"CRF {'on' if metrics['crf'] else 'off'})")
    for kind in ("unsupervised", "linear"):
        print(f"  {kind:12s} Acc {metrics[kind]['acc']:6.2f}  mIoU {metrics[kind]['miou']:6.2f}")
    if metrics.get("reused"):
        print("  nothing changed since the last evaluation: its stored result (--force: again)")
    print(f"  written to {metrics['out_dir']}/metrics.json")
    return 0


if __name__ == "__main__":
    run_cli(main)
