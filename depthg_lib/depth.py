"""Stage 01 — monocular depth for every image (docs/method.md §2), by a `depth_models` backend
or (`gt`) SynthScenes ground truth, stored as `depth_format` says."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import io
from .config import Profile, load_profile, profile_arg
from .data import reader_for_profile
from .data.synthscenes import FAR_DEPTH
from .depth_format import STAGE_COMMAND, depth_to_uint16, load_depth_png, normalise_depth
from .depth_models import DEFAULT_MODELS, load_depth_model
from .env import device_arg, resolve_device
from .errors import DepthGError, run_cli
from .evalset import to_tensor


def depth_agreement(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """`mae` of the min–max normalised maps and `spearman` ρ of their pixels (scale- and
    shift-free, the fair number for relative depth)."""
    from scipy.stats import spearmanr  # scipy.stats is slow to import; only chapter 01 needs it

    a, b = normalise_depth(estimate).ravel(), normalise_depth(reference).ravel()
    rho = spearmanr(a, b).statistic if a.std() > 0 and b.std() > 0 else float("nan")
    return {"mae": float(np.abs(a - b).mean()), "spearman": float(rho)}


def compare_with_ground_truth(reader, split: str, names: Sequence[str],
                              model=None) -> tuple[list, list, list]:
    """(images, estimates, ground truths) of SynthScenes images: the stored maps or `model`'s."""
    images = [reader.load_image(split, n) for n in names]
    if model is None:
        estimates = [load_depth_png(reader.depth_path(split, n)) for n in names]
    else:
        estimates = [model.estimate_depth(to_tensor([im]).contiguous())[0].cpu().numpy()
                     for im in images]
    return images, estimates, [_gt_depth(reader, split, n) for n in names]


def mean_agreement(estimates: Sequence[np.ndarray], references: Sequence[np.ndarray]
                   ) -> dict[str, float]:
    """`depth_agreement` averaged over images (each image normalised on its own)."""
    scores = [depth_agreement(e, r) for e, r in zip(estimates, references)]
    return {key: float(np.nanmean([s[key] for s in scores])) for key in ("mae", "spearman")}


def _gt_depth(reader, split: str, name: str) -> np.ndarray:
    """SynthScenes ground truth in metres; sky (and anything beyond) is the far plane."""
    depth = np.asarray(reader.load_gt_depth(split, name), dtype=np.float32)
    return np.where(np.isfinite(depth), np.minimum(depth, FAR_DEPTH), FAR_DEPTH)


def present_splits(reader) -> tuple[str, ...]:
    """The splits `all` means: train, and val where the dataset has one."""
    return tuple(s for s in reader.splits if s == "train" or _names_or_none(reader, s))


def depth_problems(profile: Profile, reader, splits: Sequence[str]) -> list[str]:
    """Why the stored maps of `splits` do not fit `profile` now ([] if they do or lack a record)."""
    record = reader.depth_record_dir() / "depth.json"
    if not record.is_file():
        return []
    made = io.load_json(record)
    problems = []
    model = profile.depth_model or DEFAULT_MODELS[profile.depth_backend]  # as `depth.json` says
    want = (profile.depth_backend, "embedded-random" if model == "random" else model)
    got = (made.get("backend"), made.get("model"))
    if got != want:
        problems.append(f"were made with depth backend {got[0]!r} (model {got[1]!r}) but "
                        f"profile {profile.name} asks for {want[0]!r} (model {want[1]!r})")
    for s in splits:
        if changed := reader.stale_depth(s):
            problems.append(f"were made from other {s} images than there are now "
                            f"({'; '.join(changed)})")
    return problems


def run_depth_stage(profile: Profile | str, force: bool = False, skip_bad: bool = False,
                    device: str = "auto", progress: bool = True) -> Path:
    """Write a depth PNG for every image not yet done (refused for other settings or images than
    `depth.json` records unless `force`); `skip_bad` lists bad images in `depth_skipped.json`."""
    profile, dev = load_profile(profile), resolve_device(device)
    reader = reader_for_profile(profile)
    reader.names("train")  # no dataset: the reader's error says how to make or get it
    splits = present_splits(reader)
    record_dir = reader.depth_record_dir()
    backend = profile.depth_backend
    model = None if backend == "gt" else load_depth_model(
        backend, profile.depth_model or None, dev, model_dir=profile.paths.data_root / "models")
    settings = model.settings() if model is not None else {  # None: gt
        "backend": "gt", "model": DEFAULT_MODELS["gt"], "weights_sha256": None,
        "resolution": "native"}
    settings = {**settings, "format": "png16, per-image min-max, larger = farther"}
    with io.stage_lock(record_dir, "depth"):
        inputs = {k: v for s in splits for k, v in reader.input_stamps(s, ("images",)).items()}
        if not io.check_stage_settings(record_dir, "depth", settings, force, inputs=inputs,
                                    command=f"{STAGE_COMMAND} --profile {profile_arg(profile)}"):
            for s in reader.splits:  # fresh or forced: no map of an earlier run may stay
                for n in _names_or_none(reader, s):
                    reader.depth_path(s, n).unlink(missing_ok=True)
        skipped = _write_maps(reader, splits, model, profile, skip_bad, progress)
    if skipped:
        io.save_json(record_dir / "depth_skipped.json", skipped)
    return record_dir


def _names_or_none(reader, split: str) -> list[str]:
    try:
        return list(reader.names(split))
    except DepthGError:
        return []


def _write_maps(reader, splits, model, profile, skip_bad, progress) -> list[str]:
    """Write every map not yet there; the next batch's images are decoded meanwhile."""
    where = reader.depth_path
    skipped: list[str] = []
    for s in splits:
        todo = [n for n in reader.names(s) if not where(s, n).exists()]
        room = io.DiskRoom(where(s, todo[0]).parent if todo else ".", len(todo), f"{s} depth maps")
        if model is None:  # gt: no images to read, no model to run
            for n in tqdm(todo, desc=f"depth {s}", disable=not progress or not todo):
                io.save_image(where(s, n), depth_to_uint16(_gt_depth(reader, s, n)))
                room.wrote()
            continue

        def load(n, s=s):
            try:
                return n, reader.load_image(s, n)
            except DepthGError as err:
                return n, err

        with tqdm(total=len(todo), desc=f"depth {s}", disable=not progress or not todo) as bar:
            for batch in io.prefetched(load, todo, max(1, profile.depth_batch),
                                    min(profile.num_workers, 8)):
                sizes: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
                for n, image in batch:
                    if isinstance(image, DepthGError):
                        if not skip_bad:
                            raise DepthGError(f"{image}, or pass --skip-bad to leave it out "
                                              "(listed in depth_skipped.json)") from None
                        skipped.append(f"{s}/{n}")
                        tqdm.write(f"skipped {s}/{n}: {image}", file=sys.stderr)
                        continue
                    sizes.setdefault(image.shape[:2], []).append((n, image))
                for group in sizes.values():  # one forward per image size
                    depth = model.estimate_depth(to_tensor([im for _, im in group]).contiguous())
                    for (n, _), d in zip(group, depth.cpu().numpy()):
                        io.save_image(where(s, n), depth_to_uint16(d))
                    room.wrote(len(group))
                bar.update(len(batch))
    return skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.depth",
        description="Stage 01: depth of every image as 16-bit PNGs (docs/method.md §2).")
    parser.add_argument("--profile", required=True, help="profile name or YAML path")
    parser.add_argument("--force", action="store_true", help="recompute every map")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images (listed in depth_skipped.json)")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bar")
    out = run_depth_stage(**vars(parser.parse_args(argv)))
    print(f"depth maps in {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
