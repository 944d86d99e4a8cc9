"""Stage 02 — five-crop (docs/method.md §3, §11): image, label and depth cut with the same
boxes into `<crop_dir>/{img,label,depth}/<split>/<n>.jpg|png|_zoedepth.png`, n = 5·index + k
(k in torchvision's order TL, TR, BL, BR, centre); labels stored +1 (0 = ignore). A journal
`<split>_progress.txt` lets an interrupted run continue without renumbering; a finished split
gets `<split>_names.txt` (`n<TAB>source name`) for `CropReader`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import io
from .config import Profile, load_profile, profile_arg
from .data.base import IGNORE
from .data.readers import reader_for_profile
from .depth import depth_problems, present_splits, require_current_depth
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
    top = int(round((height - h) / 2.0))
    left = int(round((width - w) / 2.0))
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


def _listing(crop_dir: Path, split: str, kind: str) -> Path:
    return crop_dir / f"{split}_{kind}.txt"


def run_crop_stage(profile: Profile | str, split: str = "train", force: bool = False,
                   skip_bad: bool = False, progress: bool = True) -> Path:
    """Five-crop image, label and depth of a split (`train`, `val` or `all`); returns crop_dir.

    Skips what is finished; other settings (`crop.json`) or changed inputs (`crop_inputs`) are
    refused unless `force`. With `skip_bad` an unreadable image is listed in
    `<split>_skipped.txt` instead of stopping the stage."""
    profile = load_profile(profile)
    reader = reader_for_profile(profile)
    crop_dir = profile.paths.crop_dir
    splits = list(present_splits(reader)) if split == "all" else [split]
    for s in splits:  # a missing dataset or split fails here, saying how to get it
        reader.names(s)
    # checked before crop.json is written: a refused run leaves no record to --force past
    require_current_depth(profile, reader, splits, "five-crop")
    for s in splits:
        _require_depth(reader, profile, s, reader.names(s), skip_bad)
    settings = {"stage": "crop", "format": _FORMAT, "dataset": profile.dataset,
                "dataset_dir": profile.paths.dataset_dir.name, "crop_ratio": profile.crop_ratio,
                "jpeg_quality": JPEG_QUALITY, "jpeg_subsampling": "4:4:4", "label_offset": 1,
                "has_labels": reader.has_labels}
    command = f"python -m depthg_lib.crop --profile {profile_arg(profile)} --split {split}"
    with io.stage_lock(crop_dir, "crop"):
        inputs = crop_inputs(reader, splits)
        if not io.check_stage_settings(crop_dir, "crop", settings, force=force, inputs=inputs,
                                       command=command):  # fresh: old bookkeeping is of no run
            for s in set(reader.splits) | set(splits):
                for kind in ("progress", "names", "skipped"):
                    _listing(crop_dir, s, kind).unlink(missing_ok=True)
        for s in splits:
            _crop_split(reader, profile, crop_dir, s, skip_bad, progress)
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
    problems = depth_problems(profile, reader, [split])
    if problems:
        raise DepthGError(
            f"{who}: the {split} crops in {crop_dir} were cut from depth maps that "
            f"{' and '.join(problems)}; redo the depth maps with `python -m depthg_lib.depth "
            f"--profile {arg} --force`, then the crops with {redo}")
    changed = io.changed_inputs(io.recorded_inputs(crop_dir, "crop"), crop_inputs(reader, [split]))
    if changed:
        raise DepthGError(
            f"{who}: the {split} crops in {crop_dir} were cut from inputs that changed since: "
            f"{'; '.join(changed)}; cut them again with {redo}")


def _read_journal(crop_dir: Path, split: str) -> tuple[dict[str, int], dict[str, str]]:
    """name → image index of finished images, and name → reason of skipped ones."""
    done, skipped = {}, {}
    journal, names = _listing(crop_dir, split, "progress"), _listing(crop_dir, split, "names")
    if journal.exists():
        for line in journal.read_text().split("\n")[:-1]:  # the last: empty, or cut short
            parts = line.split("\t")
            if len(parts) >= 2 and parts[0] == "skip":
                skipped[parts[1]] = parts[2] if len(parts) > 2 else ""
            elif len(parts) == 2 and parts[0].isdigit():
                done[parts[1]] = int(parts[0])
    elif names.exists():  # a finished split: its final record
        for line in names.read_text().splitlines():
            n, name = line.split("\t", 1)
            done.setdefault(name, int(n) // N_CROPS)
        skipped_file = _listing(crop_dir, split, "skipped")
        if skipped_file.exists():
            skipped.update(line.partition("\t")[::2]
                           for line in skipped_file.read_text().splitlines())
    return done, skipped


def _crop_split(reader, profile: Profile, crop_dir: Path, split: str, skip_bad: bool,
                progress: bool) -> None:
    names = reader.names(split)
    done, skipped = _read_journal(crop_dir, split)
    todo = [n for n in names
            if not (n in skipped and skip_bad)
            and not (n in done and _finished(crop_dir, split, done[n], reader.has_labels))]
    journal = _listing(crop_dir, split, "progress")
    if not todo and not journal.exists() and _listing(crop_dir, split, "names").exists():
        return  # finished earlier with these settings: touch nothing
    _require_depth(reader, profile, split, [n for n in todo if n not in done], skip_bad)

    journal.parent.mkdir(parents=True, exist_ok=True)
    if not journal.exists():  # keep the journal whole: seed it from a finished record
        with open(journal, "w") as fh:
            fh.writelines(f"{i}\t{name}\n" for name, i in sorted(done.items(), key=lambda x: x[1]))
            fh.writelines(f"skip\t{name}\t{why}\n" for name, why in skipped.items())
    next_index = max(done.values(), default=-1) + 1
    room = io.DiskRoom(crop_dir, len(todo), f"{split} images to crop")
    with open(journal, "a") as log:
        for name in tqdm(todo, desc=f"five-crop {split}", unit="img", disable=not progress):
            index = done.get(name, next_index)
            try:
                _crop_one(reader, crop_dir, split, name, index, profile.crop_ratio)
            except DepthGError as err:
                if name in done:  # a numbered image cannot be dropped now
                    raise
                if not skip_bad:
                    raise DepthGError(f"{err}; or pass --skip-bad to leave {split}/{name} out "
                                      f"(listed in {split}_skipped.txt)") from None
                reason = str(err).replace("\t", " ").replace("\n", " ")
                skipped[name] = reason
                log.write(f"skip\t{name}\t{reason}\n")
                log.flush()
                continue
            room.wrote()
            if name not in done:
                done[name] = index
                next_index += 1
                skipped.pop(name, None)
                log.write(f"{index}\t{name}\n")
                log.flush()
    _finish_split(crop_dir, split, done, skipped)


def _require_depth(reader, profile, split, todo, skip_bad) -> None:
    missing = [n for n in todo if not reader.depth_path(split, n).is_file()]
    if skip_bad and missing:  # a bad image has no depth: it will be skipped, not an error
        missing = [n for n in missing if _readable(reader, split, n)]
    if not missing:
        return
    skipped_file = reader.depth_record_dir() / "depth_skipped.json"
    skipped = set(io.load_json(skipped_file)) if skipped_file.is_file() else set()
    if all(f"{split}/{n}" in skipped for n in missing):  # unreadable: the depth stage left them
        raise DepthGError(
            f"five-crop: {len(missing)} {split} images have no depth map because the depth "
            f"stage left them out as unreadable (listed in {skipped_file}, e.g. "
            f"{reader.image_path(split, missing[0])}); leave them out here too with "
            f"`python -m depthg_lib.crop --profile {profile_arg(profile)} --skip-bad`")
    raise DepthGError(
        f"five-crop needs depth maps first: {len(missing)} of {len(todo)} {split} images "
        f"have none (e.g. {reader.depth_path(split, missing[0])}). Run "
        f"`python -m depthg_lib.depth --profile {profile_arg(profile)}` (chapter 01) first")


def _readable(reader, split, name) -> bool:
    try:
        reader.load_image(split, name)
    except DepthGError:
        return False
    return True


def _finished(crop_dir: Path, split: str, index: int, has_labels: bool) -> bool:
    kinds = ("img", "depth", "label") if has_labels else ("img", "depth")
    return all(crop_paths(crop_dir, split, N_CROPS * index + k)[kind].exists()
               for k in range(N_CROPS) for kind in kinds)


def _crop_one(reader, crop_dir: Path, split: str, name: str, index: int, ratio: float) -> None:
    image = reader.load_image(split, name)
    label = reader.load_label(split, name)
    depth_file = reader.depth_path(split, name)
    depth = io.read_depth_png(depth_file, "re-run the depth stage, or pass --skip-bad")
    height, width = image.shape[:2]
    for what, arr, path in (("label", label, reader.label_path(split, name)),
                            ("depth map", depth, depth_file)):
        if arr is not None and arr.shape[:2] != (height, width):
            raise DepthGError(
                f"{what} {path} is {arr.shape[0]}×{arr.shape[1]} but its image "
                f"{reader.image_path(split, name)} is {height}×{width}; they must match"
                + (" (re-run the depth stage with --force)" if what == "depth map" else ""))
    stored_label = None
    if label is not None:  # docs/method.md §11: stored +1 so that 0 = ignore
        stored_label = np.where(label == IGNORE, 0, label.astype(np.int64) + 1).astype(np.uint8)
    for k, box in enumerate(five_crop_boxes(height, width, ratio)):
        paths = crop_paths(crop_dir, split, N_CROPS * index + k)
        if stored_label is not None:
            io.save_image(paths["label"], crop_array(stored_label, box))
        io.save_image(paths["depth"], crop_array(depth, box))
        # quality 95 as released; no chroma subsampling, so a crop loses as little as it can
        io.save_image(paths["img"], crop_array(image, box), quality=JPEG_QUALITY, subsampling=0)


def _finish_split(crop_dir: Path, split: str, done: dict[str, int], skipped: dict) -> None:
    """Write the names record, drop strays (of a longer run, or temp files), close the journal."""
    order = sorted(done.items(), key=lambda item: item[1])
    if [i for _, i in order] != list(range(len(order))):
        raise DepthGError(f"{_listing(crop_dir, split, 'progress')} is inconsistent (image "
                          "numbers are not 0, 1, 2, ...); re-run with --force")
    count = N_CROPS * len(order)
    for sub in ("img", "label", "depth"):
        folder = crop_dir / sub / split
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            stem = path.name.split(".")[0].split("_")[0]
            if path.name.startswith(".") or (stem.isdigit() and int(stem) >= count):
                path.unlink()
    with io.atomic_path(_listing(crop_dir, split, "names")) as tmp:
        tmp.write_text("".join(f"{N_CROPS * i + k}\t{name}\n" for name, i in order
                               for k in range(N_CROPS)))
    skipped_file = _listing(crop_dir, split, "skipped")
    if skipped:
        with io.atomic_path(skipped_file) as tmp:
            tmp.write_text("".join(f"{name}\t{why}\n" for name, why in sorted(skipped.items())))
    else:
        skipped_file.unlink(missing_ok=True)
    _listing(crop_dir, split, "progress").unlink(missing_ok=True)


class CropReader:
    """A five-cropped split: `load(n) -> (image, label, depth)`, uint8 RGB, uint8 ids (255 =
    ignore), uint16 depth (an 8-bit depth PNG widened ×257)."""

    def __init__(self, crop_dir: str | os.PathLike, split: str, profile: str | None = None):
        self.crop_dir = Path(crop_dir)
        self.split = split
        names_file = _listing(self.crop_dir, split, "names")
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
            files = [_listing(self.crop_dir, self.split, "names")]
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
    parser.add_argument("--skip-bad", action="store_true",
                        help="leave out unreadable images (listed in <split>_skipped.txt)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    crop_dir = run_crop_stage(args.profile, split=args.split, force=args.force,
                              skip_bad=args.skip_bad, progress=not args.no_progress)
    for split in ("train", "val"):
        if _listing(crop_dir, split, "names").exists():
            skipped = _listing(crop_dir, split, "skipped")
            n_skipped = len(skipped.read_text().splitlines()) if skipped.exists() else 0
            print(f"{split}: {len(CropReader(crop_dir, split))} crops"
                  + (f", {n_skipped} images skipped (see {skipped})" if n_skipped else ""))
    print(f"five-crop output: {crop_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
