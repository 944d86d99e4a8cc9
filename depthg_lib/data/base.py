"""What every dataset reader offers, and the report `python -m depthg_lib.data check` prints.

A reader hides one dataset's folder layout (docs/method.md §1, §11) behind the same few calls;
splits are `train` and `val`, labels uint8 class ids `0..C-1` with 255 = ignore.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DepthGError
from ..io import changed_inputs, read_label, read_rgb, recorded_inputs, stamp_files

IGNORE = 255
SPLITS = ("train", "val")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SHOW = 5  # unmatched names listed by a check


def check_command(dataset: str, root: str | os.PathLike) -> str:
    return f"python -m depthg_lib.data check --dataset {dataset} --root {root}"


@dataclass
class SplitReport:
    """What `check()` found for one split."""

    split: str
    where: str = ""  # the folder or list file the split is read from
    images: int = 0
    labels: int | None = None  # None: the dataset has no labels
    depth: int = 0
    missing_images: list[str] = field(default_factory=list)  # listed, file absent
    without_label: list[str] = field(default_factory=list)
    label_only: list[str] = field(default_factory=list)  # labels whose image is absent
    bad: list[str] = field(default_factory=list)  # unreadable files (deep check)
    stale_depth: bool = False  # depth maps made from other images (depth.json says)
    error: str = ""  # the split could not be read at all


@dataclass
class CheckReport:
    """Present/missing files per split, with counts; `usable` says whether stages can run."""

    dataset: str
    root: Path
    tree: str
    splits: dict[str, SplitReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root}", "", "expected layout:"]
        lines += ["  " + line for line in self.tree.splitlines()]
        lines += ["", "found:"]
        for rep in self.splits.values():
            if rep.error:
                lines.append(f"  {rep.split:<5}  MISSING ({rep.where})")
                continue
            parts = [f"{rep.images} images"]
            if rep.labels is not None:
                parts.append(f"{rep.labels} labels")
            parts.append(f"depth {rep.depth}/{rep.images}"
                         + (" (STALE: made from other images)" if rep.stale_depth else ""))
            lines.append(f"  {rep.split:<5}  " + ", ".join(parts) + f"   ({rep.where})")
            for title, names in (("listed but image file absent", rep.missing_images),
                                 ("images without a label", rep.without_label),
                                 ("labels without an image", rep.label_only),
                                 ("unreadable", rep.bad)):
                if names:
                    more = f", ... ({len(names)} in all)" if len(names) > _SHOW else ""
                    lines.append(f"         {title}: {', '.join(names[:_SHOW])}{more}")
        if self.notes:
            lines += ["", "notes:"] + [f"  - {n}" for n in self.notes]
        if self.problems:
            lines += ["", "problems:"] + [f"  - {p}" for p in self.problems]
        lines += ["", "verdict: " + ("usable" if self.usable else "NOT usable")]
        return "\n".join(lines)


class DatasetReader:
    """One dataset folder seen through the common interface (subclasses fill in the layout)."""

    name: str = ""
    class_names: tuple[str, ...] = ()
    has_labels: bool = True
    splits: tuple[str, ...] = SPLITS
    tree: str = ""  # the expected layout, as the check prints it
    # A name's files relative to the root: {split} (through `split_dirs`), {name} and what
    # `_fields(name)` adds. The depth stage writes 16-bit min–max normalised PNGs (§2).
    layout: dict[str, str] = {"depth": "depth/{split}/{name}.png"}
    split_dirs: dict[str, str] = {}
    _list_hint = ""  # what the split list is, in the message when it is missing

    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.expanduser(str(root)))
        self._cache: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    # -- what a subclass provides -------------------------------------------------------
    def _list(self, split: str) -> list[str]:
        """All names of a split (any order), by default those in its list file; raise `_missing`
        when the split is absent."""
        path = self._split_location(split)
        try:
            names = path.read_text().split()
        except FileNotFoundError:
            raise self._missing(split, path, self._list_hint) from None
        except (OSError, UnicodeDecodeError) as err:
            raise DepthGError(f"cannot read split list {path} ({err})") from None
        if not names:
            raise DepthGError(f"split list {path} is empty; expected one image id per line")
        return names

    def _split_location(self, split: str) -> Path:
        """The folder or list file a split is read from (for messages and the check)."""
        raise NotImplementedError

    def _fields(self, name: str) -> dict[str, str]:
        return {}

    def _path(self, kind: str, split: str, name: str) -> Path:
        self._check_split(split)
        return self.root / self.layout[kind].format(
            split=self.split_dirs.get(split, split), name=name, **self._fields(name))

    def image_path(self, split: str, name: str) -> Path:
        return self._path("image", split, name)

    def label_path(self, split: str, name: str) -> Path | None:
        return self._path("label", split, name) if "label" in self.layout else None

    def depth_path(self, split: str, name: str) -> Path:
        return self._path("depth", split, name)

    def _label_names(self, split: str, names: list[str]) -> set[str]:
        """Names that have a label file (for the check); a subclass may list them cheaper."""
        return {n for n in names if self.label_path(split, n).is_file()}

    def _map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Stored ids → `0..C-1`, 255 ignore. Default: stored ids are already class ids."""
        return lookup_label(raw, {i: i for i in range(self.n_classes)}, path,
                            f"class id (0..{self.n_classes - 1})")

    # -- the common interface -----------------------------------------------------------
    def names(self, split: str) -> list[str]:
        """Sorted image names of a split; position in this list is the image's index."""
        self._check_split(split)
        if split not in self._cache:
            self._require_root()
            self._cache[split] = sorted(self._list(split))
        return list(self._cache[split])

    def load_image(self, split: str, name: str) -> np.ndarray:
        """RGB uint8 (H, W, 3), whatever mode the file has; a corrupt file names itself."""
        return read_rgb(self.image_path(split, name))

    def load_label(self, split: str, name: str) -> np.ndarray | None:
        """uint8 (H, W) class ids `0..C-1`, 255 = ignore; None for a dataset without labels."""
        path = self.label_path(split, name)
        if path is None:
            return None
        raw = read_label(path)
        if raw.ndim != 2:
            raise DepthGError(f"label {path} has shape {raw.shape}; expected one channel "
                              "(H, W) of class ids")
        return self._map_label(raw, path)

    def load_gt_depth(self, split: str, name: str) -> np.ndarray | None:
        """Ground-truth depth in metres (SynthScenes only); None elsewhere."""
        return None

    def depth_record_dir(self) -> Path:
        """The folder above every depth map, where the depth stage keeps `depth.json`."""
        parents = set()
        for s in self.splits:
            try:
                names = self.names(s)
            except DepthGError:
                continue
            if names:
                parents.add(str(self.depth_path(s, names[0]).parent))
        if not parents:
            return self.root / "depth"
        return Path(os.path.commonpath(sorted(parents)))

    def input_stamps(self, split: str, kinds: tuple[str, ...] = ("images",)) -> dict[str, dict]:
        """Digests of a split's `images`, `labels` or `depth`, keyed `<split>/<kind>`: what a
        stage records as its inputs (`io.check_stage_settings`)."""
        names = self.names(split)
        paths = {"images": self.image_path, "labels": self.label_path, "depth": self.depth_path}
        stamps = {}
        for kind in kinds:
            if kind == "labels" and not self.has_labels:
                continue
            files = [paths[kind](split, n) for n in names]
            where = (Path(os.path.commonpath([str(f.parent) for f in files])) if files
                     else self.root)
            what = f"the {split} {'depth maps' if kind == 'depth' else kind} in {where}"
            stamps[f"{split}/{kind}"] = stamp_files(files, self.root, what=what)
        return stamps

    def stale_depth(self, split: str) -> list[str]:
        """What changed in a split's images since the depth stage recorded them ([] if none)."""
        recorded = recorded_inputs(self.depth_record_dir(), "depth")
        if f"{split}/images" not in recorded:
            return []
        return changed_inputs(recorded, self.input_stamps(split, ("images",)))

    def check(self, deep: bool = False, profile_arg: str | None = None) -> CheckReport:
        """Count what is present and missing per split (`deep` also opens every file); stale depth
        maps are a problem, named with the command that redoes them (with `profile_arg`)."""
        report = CheckReport(self.name, self.root, self.tree)
        if not self.root.is_dir():
            report.problems.append(f"dataset folder {self.root} does not exist")
            return report
        report.notes += self.check_notes()
        redo = f"python -m depthg_lib.depth --profile {profile_arg or '<profile>'}"
        for split in self.splits:
            rep = report.splits[split] = SplitReport(split, str(self._split_location(split)))
            try:
                names = self.names(split)
            except DepthGError as err:
                rep.error = str(err)
                if split == "train":
                    report.problems.append(f"split train: missing {rep.where}")
                else:
                    report.notes.append(f"split {split}: missing {rep.where} (needed for "
                                        "evaluation and validation)")
                continue
            self._check_files(split, names, rep, report, deep, redo)
        if any(r.depth < r.images for r in report.splits.values() if not r.error):
            report.notes.append(f"depth maps are written by `{redo}` (chapter 01); missing "
                                "ones are normal before it")
        return report

    # -- helpers --------------------------------------------------------------------------
    def check_notes(self) -> list[str]:
        """What `check` should tell about this kind of dataset beyond the counts."""
        return []

    def _check_files(self, split, names, rep, report, deep: bool, redo: str) -> None:
        """One split of `check`: images, labels, depth maps and (`deep`) unreadable files."""
        exists = {n: self.image_path(split, n).is_file() for n in names}
        present = [n for n in names if exists[n]]
        rep.images = len(present)
        rep.missing_images = [n for n in names if not exists[n]]
        if rep.missing_images:
            report.problems.append(
                f"split {split}: {len(rep.missing_images)} listed images are absent, e.g. "
                f"{self.image_path(split, rep.missing_images[0])}")
        if not present:
            (report.problems if split == "train" else report.notes).append(
                f"split {split}: no images in {rep.where}")
        if self.has_labels:
            labelled = self._label_names(split, names)
            rep.labels = len(labelled)
            rep.without_label = [n for n in present if n not in labelled]
            rep.label_only = sorted(labelled - set(present))
            if rep.without_label:
                report.problems.append(
                    f"split {split}: {len(rep.without_label)} of {len(present)} images have no "
                    f"label, e.g. {self.label_path(split, rep.without_label[0])} is missing")
            if rep.label_only:
                report.notes.append(f"split {split}: {len(rep.label_only)} labels have no image "
                                    f"(ignored), e.g. {rep.label_only[0]}")
        rep.depth = sum(self.depth_path(split, n).is_file() for n in present)
        stale = self.stale_depth(split) if rep.depth else []
        if stale:
            rep.stale_depth = True
            report.problems.append(
                f"split {split}: the depth maps in {self.depth_record_dir()} were made from "
                f"other images ({'; '.join(stale)}); redo them with `{redo} --force`")
        if deep:
            for name in tqdm(present, desc=f"open {split}", leave=False):
                try:
                    self.load_image(split, name)
                    self.load_label(split, name)
                except DepthGError as err:
                    rep.bad.append(f"{name} ({err})")
            if rep.bad:
                report.problems.append(f"split {split}: {len(rep.bad)} unreadable files (first: "
                                       f"{rep.bad[0]}); replace them or run the stages with "
                                       "--skip-bad")

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DepthGError(f"dataset {self.name} has no split {split!r}; splits are "
                              f"{', '.join(self.splits)}")

    _root_hint = ("Put the data there or point the profile at it (keys data_root, "
                  "dataset_dir; see data/README.md)")

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise DepthGError(
                f"dataset folder {self.root} does not exist (dataset {self.name}). "
                f"{self._root_hint}, then check it with: {check_command(self.name, self.root)}")

    def _missing(self, split: str, what: Path, hint: str = "") -> DepthGError:
        return DepthGError(
            f"dataset {self.name}: split {split} expects {what}, which does not exist{hint}. "
            f"Check the layout with: {check_command(self.name, self.root)}")


def lookup_label(raw: np.ndarray, table: dict[int, int], path: Path, what: str) -> np.ndarray:
    """Map stored ids through `table`; 255 stays ignore, any other id names the file and value."""
    ids = np.asarray(raw).astype(np.int64)
    lut = np.full(256, -1, dtype=np.int16)
    lut[list(table)] = list(table.values())
    lut[IGNORE] = IGNORE
    mapped = np.where((ids >= 0) & (ids <= 255), lut[ids.clip(0, 255)], -1)
    if (mapped < 0).any():
        raise DepthGError(f"label {path} holds value {int(ids[mapped < 0][0])}: not a {what} "
                          "nor 255 (ignore)")
    return mapped.astype(np.uint8)


def scan_images(folder: Path, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """name (posix path relative to `folder`, no suffix) → image file, skipping `exclude`."""
    found: dict[str, Path] = {}
    clashes = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        top = here == folder
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not (top and d in exclude))
        for fname in sorted(filenames):
            path = here / fname
            if fname.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in found:
                clashes.append(f"{found[name]} and {path}")
            found[name] = path
    if clashes:
        raise DepthGError(f"two images share a name (only the suffix differs): {clashes[0]}"
                          f"{f' (and {len(clashes) - 1} more)' if len(clashes) > 1 else ''}; "
                          "rename or remove one of each pair")
    return found
