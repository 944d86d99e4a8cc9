"""`get_reader(dataset, root)`: the one door to every dataset, plus the two simple layouts.

SynthScenes (docs/method.md §1) is written by `depthg_lib.data.synthscenes` in the STEGO layout;
`directory` is any folder of the learner's own images (no labels). The real datasets live in
`cocostuff.py`, `cityscapes.py` and `potsdam.py` (docs/method.md §11).
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import DepthGError
from .base import SPLITS, DatasetReader, scan_images
from .cityscapes import CityscapesReader
from .cocostuff import CocoStuff27Reader
from .potsdam import PotsdamReader
from .synthscenes.classes import CLASSES as SYNTH_CLASSES


class _ScannedReader(DatasetReader):
    """A reader whose images are found by scanning a split's folder (any image suffix)."""

    def __init__(self, root):
        super().__init__(root)
        self._paths: dict[str, dict[str, Path]] = {}

    def _scan(self, split) -> dict[str, Path]:
        raise NotImplementedError

    def _list(self, split):
        return list(self._scan(split))


class SynthScenesReader(_ScannedReader):
    """`imgs/<split>/<name>.jpg`, `labels/<split>/<name>.png`, `depth_gt/<split>/<name>.npy`."""

    name = "synthscenes"
    layout = {**DatasetReader.layout, "label": "labels/{split}/{name}.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  synthscenes.json                      class table (name, colour, thing/stuff)
  imgs/{train,val}/<name>.jpg           RGB images
  labels/{train,val}/<name>.png         uint8 class ids, 255 = ignore
  depth_gt/{train,val}/<name>.npy       float32 ground-truth depth in metres
  instances/{train,val}/<name>.png      instance ids (figures only)
  depth/{train,val}/<name>.png          16-bit depth, written by python -m depthg_lib.depth"""
    _root_hint = ("Generate it first: chapter 00, or python -m depthg_lib.data.synthscenes "
                  "--out DIR --n-train N --n-val M --size S")

    # The class table comes from the dataset's own `synthscenes.json` when present, so that a
    # folder made by another version of the generator still names its classes right.
    @cached_property
    def _classes(self) -> list[tuple[str, bool, tuple | None]]:
        path = self.root / "synthscenes.json"
        if path.is_file():
            try:
                classes = json.loads(path.read_text()).get("classes")
                if classes:
                    return [(str(c["name"]), bool(c.get("is_thing", False)),
                             tuple(c["color"]) if c.get("color") else None) for c in classes]
            except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
                raise DepthGError(f"{path} is not a SynthScenes class table ({err}); "
                                  "re-generate the SynthScenes folder (chapter 00)") from None
        return [(c.name, c.is_thing, c.color) for c in SYNTH_CLASSES]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self._classes)

    @property
    def n_classes(self) -> int:
        return len(self._classes)

    @property
    def thing_flags(self) -> tuple[bool, ...]:
        return tuple(c[1] for c in self._classes)

    @property
    def class_colors(self) -> tuple | None:
        """RGB colour per class from the class table (figures), or None if it has none."""
        colors = [c[2] for c in self._classes]
        return None if any(c is None for c in colors) else tuple(colors)

    def _split_location(self, split):
        return self.root / "imgs" / split

    def _scan(self, split) -> dict[str, Path]:
        if split not in self._paths:
            folder = self._split_location(split)
            if not folder.is_dir():
                raise self._missing(split, folder, hint=_GENERATE_HINT)
            self._paths[split] = scan_images(folder)
        return self._paths[split]

    def image_path(self, split, name):
        self._check_split(split)
        path = self._paths.get(split, {}).get(name)
        return path or self.root / "imgs" / split / f"{name}.jpg"

    def _label_names(self, split):
        folder = self.root / "labels" / split
        return {p.stem for p in folder.glob("*.png")} if folder.is_dir() else set()

    def load_gt_depth(self, split, name):
        path = self.root / "depth_gt" / split / f"{name}.npy"
        try:
            depth = np.load(path)
        except FileNotFoundError:
            raise DepthGError(f"ground-truth depth {path} does not exist; re-generate the "
                              "SynthScenes folder (chapter 00)") from None
        except (ValueError, OSError) as err:
            raise DepthGError(f"cannot read ground-truth depth {path} ({err}); re-generate "
                              "the SynthScenes folder (chapter 00)") from None
        return np.asarray(depth, dtype=np.float32)

    def _extra_notes(self):
        if not (self.root / "synthscenes.json").is_file():
            return [f"{self.root / 'synthscenes.json'} is absent: class names come from the "
                    "library's own table"]
        return []


_GENERATE_HINT = (" (SynthScenes is generated by chapter 00, or by python -m "
                  "depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S)")


class DirectoryReader(_ScannedReader):
    """Any folder of images, searched recursively, no labels; names are relative paths.

    With `train/` (and optionally `val/`) sub-folders those are the splits; otherwise every
    image is in split `train`. The depth stage's output folder `depth/` is never read as input.
    """

    name = "directory"
    has_labels = False
    tree = """\
<root>/                                 any folder of your images (jpg, png, ...), searched
  **/<name>.jpg|png                     recursively; no labels. Optional: train/ and val/
                                        sub-folders to have a held-out split
  depth/<split>/<name>.png              16-bit depth, written by python -m depthg_lib.depth"""

    @property
    def splits(self):
        if (self.root / "train").is_dir() or (self.root / "val").is_dir():
            return tuple(s for s in SPLITS if (self.root / s).is_dir())
        return ("train",)

    def _check_split(self, split):
        if split == "val" and split not in self.splits and split in SPLITS:
            raise DepthGError(
                f"folder {self.root} has no val split: all its images form split train. For a "
                f"held-out split put images in {self.root / 'train'} and {self.root / 'val'}")
        super()._check_split(split)

    def _split_location(self, split):
        return self.root / split if (self.root / "train").is_dir() else self.root

    def _scan(self, split):
        if split not in self._paths:
            folder = self._split_location(split)
            exclude = ("depth",) if folder == self.root else ()
            self._paths[split] = scan_images(folder, recursive=True, exclude=exclude)
        return self._paths[split]

    def image_path(self, split, name):
        self._check_split(split)
        path = self._scan(split).get(name) if self.root.is_dir() else None
        if path is None:
            raise DepthGError(f"no image named {name!r} in {self._split_location(split)}")
        return path

    def _extra_notes(self):
        if "val" in self.splits:
            return []
        return [f"no val split: every image is in split train, which is all that depth, crop, "
                f"knn and predict need. A held-out split (for "
                f"validation) needs the images in {self.root / 'train'} and "
                f"{self.root / 'val'}"]


READERS: dict[str, type[DatasetReader]] = {
    "synthscenes": SynthScenesReader,
    "cocostuff27": CocoStuff27Reader,
    "cityscapes": CityscapesReader,
    "potsdam": PotsdamReader,
    "directory": DirectoryReader,
}


def get_reader(dataset: str, root: str | os.PathLike) -> DatasetReader:
    """The reader of `dataset` (a profile's `dataset`) over `root` (`paths.dataset_dir`)."""
    try:
        cls = READERS[dataset]
    except KeyError:
        raise DepthGError(f"unknown dataset {dataset!r}; known datasets: "
                          f"{', '.join(READERS)}") from None
    return cls(root)


def reader_for_profile(profile) -> DatasetReader:
    """`get_reader(profile.dataset, profile.paths.dataset_dir)`."""
    return get_reader(profile.dataset, profile.paths.dataset_dir)
