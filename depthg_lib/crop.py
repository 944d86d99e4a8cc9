"""Stage 02 — five-crop (docs/method.md §3): image, label (+1, 0 = ignore) and depth cut with the
same boxes into `<crop_dir>/{img,label,depth}/<split>/`, crop n = 5·index + k (k in torchvision's
order); a finished split gets `<split>_names.txt` (`n<TAB>source name`) for `CropReader`."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import io
from .config import Profile, load_profile, profile_arg
from .data.base import IGNORE
from .data.readers import reader_for_profile
from .depth import depth_problems, present_splits
from .errors import DepthGError, run_cli

JPEG_QUALITY = 95
N_CROPS = 5
_FORMAT = 1  # bump when the output layout changes


def five_crop_boxes(height: int, width: int, ratio: float = 0.5) -> list[tuple[int, int, int, int]]:
    """The five (top, left, h, w) boxes of torchvision's `five_crop`, h = ⌊ratio·H⌋, w = ⌊ratio·W⌋,
    not square: as the released code (golden `g_five_crop_*`); centre offsets round half to even."""
    height, width = int(height), int(width)
    h, w = int(height * ratio), int(width * ratio)
    if not 0 < ratio <= 1 or h < 1 or w < 1:
        raise DepthGError(f"five-crop: ratio {ratio} of a {height}×{width} image gives an empty "
                          "crop; use a crop_ratio in (0, 1] and images of at least 2×2 pixels")
    top, left = int(round((height - h) / 2.0)), int(round((width - w) / 2.0))
    return [(0, 0, h, w), (0, width - w, h, w), (height - h, 0, h, w),
            (height - h, width - w, h, w), (top, left, h, w)]


def crop_array(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The (top, left, h, w) box of an (H, W, ...) array (a copy)."""
    top, left, h, w = box
    return np.ascontiguousarray(array[top:top + h, left:left + w])


def dominant_class_share(label: np.ndarray) -> float:
    """Share of the labelled pixels (not 255) in the most frequent class; nan if none."""
    values = np.asarray(label).ravel()
    values = values[values != IGNORE]
    if values.size == 0:
        return float("nan")
    return float(np.bincount(values.astype(np.int64)).max() / values.size)


def crop_paths(crop_dir: str | os.PathLike, split: str, n: int) -> dict[str, Path]:
    """Where crop n of a split lives (docs/method.md §11)."""
    crop_dir = Path(crop_dir)
    return {"img": crop_dir / "img" / split / f"{n}.jpg",
            "label": crop_dir / "label" / split / f"{n}.png",
            "depth": crop_dir / "depth" / split / f"{n}_zoedepth.png"}


def run_crop_stage(profile: Profile | str, split: str = "train", force: bool = False,
                   progress: bool = True) -> Path:
    """Five-crop a split (`train`, `val` or `all`), but what the depth stage left out as unreadable;
    other settings or changed inputs than `crop.json` records are refused unless `force`."""
    profile = load_profile(profile)
    reader, crop_dir = reader_for_profile(profile), profile.paths.crop_dir
    splits = list(present_splits(reader)) if split == "all" else [split]
    for s in splits:  # a missing dataset or split fails here, saying how to get it
        reader.names(s)
    # checked before crop.json is written: a refused run leaves no record to --force past
    if problems := depth_problems(profile, reader, splits):
        raise DepthGError(
            f"five-crop: the depth maps in {reader.depth_record_dir()} {' and '.join(problems)}; "
            f"redo them with `python -m depthg_lib.depth --profile {profile_arg(profile)} --force`")
    names = {s: _with_depth(reader, profile, s) for s in splits}
    settings = {"stage": "crop", "format": _FORMAT, "dataset": profile.dataset,
                "dataset_dir": profile.paths.dataset_dir.name, "crop_ratio": profile.crop_ratio,
                "jpeg_quality": JPEG_QUALITY, "jpeg_subsampling": "4:4:4", "label_offset": 1,
                "has_labels": reader.has_labels}
    command = f"python -m depthg_lib.crop --profile {profile_arg(profile)} --split {split}"
    with io.stage_lock(crop_dir, "crop"):
        inputs = crop_inputs(reader, splits)
        if not io.check_stage_settings(crop_dir, "crop", settings, force=force, inputs=inputs,
                                       command=command):  # fresh: no crop of an older run stays
            for s in set(reader.splits) | set(splits):
                (crop_dir / f"{s}_names.txt").unlink(missing_ok=True)
                for sub in ("img", "label", "depth"):
                    shutil.rmtree(crop_dir / sub / s, ignore_errors=True)
        for s in splits:
            _crop_split(reader, profile, crop_dir, s, names[s], progress)
    return crop_dir


def crop_inputs(reader, splits) -> dict[str, dict]:
    """What the crops of `splits` are cut from: the depth record's part, images, labels, maps."""
    depth_record = reader.depth_record_dir() / "depth.json"
    inputs = {}
    for s in splits:
        inputs[f"{s}/depth-record"] = io.record_digest(
            depth_record, split=s, what=f"the depth stage's record {depth_record} ({s} part)")
        inputs.update(reader.input_stamps(s, ("images", "labels", "depth")))
    return inputs


def require_current_crops(profile: Profile, split: str, who: str) -> None:
    """Refuse (for stage `who`) crops of `split` that no longer match the chain crops ← depth
    maps ← images; without the dataset folder (deleted once cropped) they stand on their own."""
    reader = reader_for_profile(profile)
    try:
        reader.names(split)
    except DepthGError:
        return
    crop_dir, arg = profile.paths.crop_dir, profile_arg(profile)
    redo = f"`python -m depthg_lib.crop --profile {arg} --force`"
    if problems := depth_problems(profile, reader, [split]):
        raise DepthGError(
            f"{who}: the {split} crops in {crop_dir} were cut from depth maps that "
            f"{' and '.join(problems)}; redo the depth maps with `python -m depthg_lib.depth "
            f"--profile {arg} --force`, then the crops with {redo}")
    changed = io.changed_inputs(io.recorded_inputs(crop_dir, "crop"), crop_inputs(reader, [split]))
    if changed:
        raise DepthGError(
            f"{who}: the {split} crops in {crop_dir} were cut from inputs that changed since: "
            f"{'; '.join(changed)}; cut them again with {redo}")


def _crop_split(reader, profile: Profile, crop_dir: Path, split: str, names: list[str],
                progress: bool) -> None:
    """Crop every image not yet finished (image i: crops 5i..5i+4), then list them."""
    kinds = ("img", "depth", "label") if reader.has_labels else ("img", "depth")
    todo = [(i, n) for i, n in enumerate(names)  # not all five crops there yet
            if not all(crop_paths(crop_dir, split, N_CROPS * i + k)[kind].exists()
                       for k in range(N_CROPS) for kind in kinds)]
    if not todo and (crop_dir / f"{split}_names.txt").exists():
        return  # finished earlier with these settings: touch nothing
    room = io.DiskRoom(crop_dir, len(todo), f"{split} images to crop")
    for index, name in tqdm(todo, desc=f"five-crop {split}", unit="img", disable=not progress):
        _crop_one(reader, crop_dir, split, name, index, profile.crop_ratio)
        room.wrote()
    for sub in ("img", "label", "depth"):  # temporary files of writes a kill cut short
        for path in (crop_dir / sub / split).glob(".*"):
            path.unlink()
    with io.atomic_path(crop_dir / f"{split}_names.txt") as tmp:
        tmp.write_text("".join(f"{N_CROPS * i + k}\t{name}\n" for i, name in enumerate(names)
                               for k in range(N_CROPS)))


def _with_depth(reader, profile, split) -> list[str]:
    """The images of `split` to crop: all but those the depth stage left out as unreadable."""
    left_out = reader.depth_record_dir() / "depth_skipped.json"
    left_out = set(io.load_json(left_out)) if left_out.is_file() else set()
    has_map = {n: reader.depth_path(split, n).is_file() for n in reader.names(split)}
    names = [n for n, ok in has_map.items() if ok]
    missing = [n for n, ok in has_map.items() if not ok and f"{split}/{n}" not in left_out]
    if missing:
        raise DepthGError(
            f"five-crop needs depth maps first: {len(missing)} {split} images have none (e.g. "
            f"{reader.depth_path(split, missing[0])}). Run `python -m depthg_lib.depth "
            f"--profile {profile_arg(profile)}` (chapter 01) first")
    return names


def _crop_one(reader, crop_dir: Path, split: str, name: str, index: int, ratio: float) -> None:
    image, label = reader.load_image(split, name), reader.load_label(split, name)
    depth_file = reader.depth_path(split, name)
    depth = io.read_depth_png(depth_file, "re-run the depth stage with --force")
    height, width = image.shape[:2]
    for what, arr, path in (("label", label, reader.label_path(split, name)),
                            ("depth map", depth, depth_file)):
        if arr is not None and arr.shape[:2] != (height, width):
            raise DepthGError(
                f"{what} {path} is {arr.shape[0]}×{arr.shape[1]} but its image "
                f"{reader.image_path(split, name)} is {height}×{width}; they must match"
                + (" (re-run the depth stage with --force)" if what == "depth map" else ""))
    if label is not None:  # docs/method.md §11: stored +1 so that 0 = ignore
        label = np.where(label == IGNORE, 0, label.astype(np.int64) + 1).astype(np.uint8)
    for k, box in enumerate(five_crop_boxes(height, width, ratio)):
        paths = crop_paths(crop_dir, split, N_CROPS * index + k)
        if label is not None:
            io.save_image(paths["label"], crop_array(label, box))
        io.save_image(paths["depth"], crop_array(depth, box))
        # quality 95 as released; no chroma subsampling, so a crop loses as little as it can
        io.save_image(paths["img"], crop_array(image, box), quality=JPEG_QUALITY, subsampling=0)


class CropReader:
    """A five-cropped split: `load(n) -> (image, label, depth)`, uint8 RGB, uint8 ids (255 =
    ignore), uint16 depth (an 8-bit depth PNG widened ×257)."""

    def __init__(self, crop_dir: str | os.PathLike, split: str, profile: str | None = None):
        self.crop_dir, self.split = Path(crop_dir), split
        names_file = self.crop_dir / f"{split}_names.txt"
        if not names_file.is_file():
            what = ("does not exist" if not self.crop_dir.exists()
                    else f"has no finished {split} split ({names_file.name} is missing)")
            raise DepthGError(
                f"five-crop folder {self.crop_dir} {what}; run `python -m depthg_lib.crop "
                f"--profile {profile or '<profile>'} --split {split}` (chapter 02) first")
        self._sources = [line.split("\t", 1)[1] for line in names_file.read_text().splitlines()]
        self.has_labels = (self.crop_dir / "label" / split).is_dir()
        self._digest: dict | None = None

    def digest(self) -> dict:
        """These crops as an input entry: the crop record's split part and every file."""
        if self._digest is None:
            kinds = ("img", "depth", "label") if self.has_labels else ("img", "depth")
            files = [self.crop_dir / f"{self.split}_names.txt"]
            files += [crop_paths(self.crop_dir, self.split, n)[kind]
                      for n in range(len(self)) for kind in kinds]
            where = f"the {self.split} crops in {self.crop_dir}"
            stamp = io.stamp_files(files, self.crop_dir, what=where)
            record = io.record_digest(self.crop_dir / "crop.json", split=self.split)
            both = hashlib.sha256(f"{stamp['digest']}|{record['digest']}".encode())
            self._digest = {"what": where, "files": len(self), "digest": both.hexdigest()[:32]}
        return self._digest

    @classmethod
    def from_profile(cls, profile: Profile | str, split: str = "train") -> CropReader:
        profile = load_profile(profile)
        return cls(profile.paths.crop_dir, split, profile=profile_arg(profile))

    def __len__(self) -> int:
        return len(self._sources)

    def __repr__(self) -> str:
        return f"CropReader({str(self.crop_dir)!r}, {self.split!r}, {len(self)} crops)"

    def source(self, n: int) -> tuple[str, int]:
        """(source image name, k): crop n is box k of that image."""
        self._check(n)
        return self._sources[n], n % N_CROPS

    def paths(self, n: int) -> dict[str, Path]:
        self._check(n)
        return crop_paths(self.crop_dir, self.split, n)

    def load(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        paths = self.paths(n)
        image = io.read_rgb(paths["img"])
        if self.has_labels:
            stored = io.read_label(paths["label"])
            label = np.where(stored == 0, IGNORE, stored.astype(np.int64) - 1).astype(np.uint8)
        else:
            label = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
        depth = io.read_depth_png(paths["depth"], "re-run the crop stage with --force")
        if depth.dtype == np.uint8:
            depth = depth.astype(np.uint16) * 257
        return image, label, depth

    def _check(self, n: int) -> None:
        if not 0 <= n < len(self):
            raise IndexError(f"crop {n} out of range: {self.split} has {len(self)} crops")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.crop",
        description="Five-crop images, labels and depth of a profile's dataset (chapter 02).")
    parser.add_argument("--profile", required=True, help="profile name or YAML file")
    parser.add_argument("--split", default="all", choices=("train", "val", "all"),
                        help="which split to crop (default: all)")
    parser.add_argument("--force", action="store_true", help="redo every crop")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bar")
    crop_dir = run_crop_stage(**vars(parser.parse_args(argv)))
    for split in ("train", "val"):
        if (crop_dir / f"{split}_names.txt").exists():
            print(f"{split}: {len(CropReader(crop_dir, split))} crops")
    print(f"five-crop output: {crop_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
