"""Every dataset reader, and `get_reader(dataset, root)`, the one door to them: SynthScenes
(docs/method.md §1), the STEGO layouts of COCO-Stuff-27, Cityscapes-27 and Potsdam-3 (§11), and
`directory`, any folder of the learner's own images."""

from __future__ import annotations

import json
import os
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from ..errors import DepthGError
from .base import IGNORE, SPLITS, DatasetReader, lookup_label, scan_images
from .synthscenes.classes import CLASSES as SYNTH_CLASSES


class SynthScenesReader(DatasetReader):
    """`imgs/<split>/<name>.jpg`, `labels/<split>/<name>.png`, `depth_gt/<split>/<name>.npy`."""

    name = "synthscenes"
    layout = {**DatasetReader.layout, "image": "imgs/{split}/{name}.jpg",
              "label": "labels/{split}/{name}.png"}
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

    @cached_property
    def _classes(self) -> list[tuple[str, tuple | None]]:
        """(name, colour) per class from the folder's own `synthscenes.json` if it has one."""
        path = self.root / "synthscenes.json"
        if path.is_file():
            try:
                classes = json.loads(path.read_text()).get("classes")
                if classes:
                    return [(str(c["name"]), tuple(c["color"]) if c.get("color") else None)
                            for c in classes]
            except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
                raise DepthGError(f"{path} is not a SynthScenes class table ({err}); "
                                  "re-generate the SynthScenes folder (chapter 00)") from None
        return [(c.name, c.color) for c in SYNTH_CLASSES]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c[0] for c in self._classes)

    @property
    def class_colors(self) -> tuple | None:
        """RGB colour per class from the class table (figures), or None if it has none."""
        colors = [c[1] for c in self._classes]
        return None if any(c is None for c in colors) else tuple(colors)

    def _split_location(self, split):
        return self.root / "imgs" / split

    def _list(self, split):
        folder = self._split_location(split)
        if not folder.is_dir():
            raise self._missing(split, folder, hint=f" ({self._root_hint})")
        return [p.stem for p in folder.glob("[!.]*.jpg")]  # not hidden files

    def _label_names(self, split, names):
        return {p.stem for p in (self.root / "labels" / split).glob("*.png")}

    def load_gt_depth(self, split, name):
        path = self.root / "depth_gt" / split / f"{name}.npy"
        try:
            depth = np.load(path)
        except (ValueError, OSError) as err:  # absent too
            raise DepthGError(f"cannot read ground-truth depth {path} ({err}); re-generate "
                              "the SynthScenes folder (chapter 00)") from None
        return np.asarray(depth, dtype=np.float32)


class DirectoryReader(DatasetReader):
    """Any folder of images, searched recursively, no labels; names are relative paths. Its
    `train/` and `val/` sub-folders are the splits if it has them, else every image is in split
    `train`. The depth stage's output folder `depth/` is never read as input."""

    name = "directory"
    has_labels = False
    tree = """\
<root>/                                 any folder of your images (jpg, png, ...), searched
  **/<name>.jpg|png                     recursively; no labels. Optional: train/ and val/
                                        sub-folders to have a held-out split
  depth/<split>/<name>.png              16-bit depth, written by python -m depthg_lib.depth"""

    @property
    def splits(self):
        return tuple(s for s in SPLITS if (self.root / s).is_dir()) or ("train",)

    def __init__(self, root):
        super().__init__(root)
        self._paths: dict[str, dict[str, Path]] = {}

    def _list(self, split):
        return list(self._scan(split))

    def _check_split(self, split):
        if split == "val" and "val" not in self.splits:
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
            self._paths[split] = scan_images(folder, exclude=exclude)
        return self._paths[split]

    def image_path(self, split, name):
        self._check_split(split)
        path = self._scan(split).get(name) if self.root.is_dir() else None
        if path is None:
            raise DepthGError(f"no image named {name!r} in {self._split_location(split)}")
        return path

    def check_notes(self):
        if "val" in self.splits:
            return []
        return [f"no val split: every image is in split train, which is all that depth, crop, "
                f"knn and predict need; a held-out split needs the images in "
                f"{self.root / 'train'} and {self.root / 'val'}"]


@cache
def fine_to_coarse() -> dict[int, int]:
    """COCO-Stuff fine id → coarse id, from the shipped `cocostuff27.json`."""
    table = json.loads(Path(__file__).with_name("cocostuff27.json").read_text())["fine_to_coarse"]
    return {int(k): int(v) for k, v in table.items()}


class CocoStuff27Reader(DatasetReader):
    """COCO-Stuff-27 as in STEGO and DepthG: only the ids of the curated lists are read, and fine
    ids 0..181 map to the 27 coarse classes of `cocostuff27.json`; 255 stays ignore."""

    name = "cocostuff27"
    # The COCO-Stuff super-categories the 27 coarse ids stand for (0..11 things, 12..26 stuff);
    # a suffix tells the stuff groups that share a name with a thing group (food, furniture).
    class_names = (
        "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory",
        "animal", "outdoor", "person", "sports", "vehicle",
        "ceiling", "floor", "food-stuff", "furniture-stuff", "rawmaterial", "textile", "wall",
        "window", "building", "ground", "plant", "sky", "solid", "structural", "water",
    )
    split_dirs = {"train": "train2017", "val": "val2017"}
    _list_hint = " (the curated image list of STEGO)"
    layout = {"image": "images/{split}/{name}.jpg", "label": "annotations/{split}/{name}.png",
              "depth": "depth/{split}/{name}_zoedepth.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  curated/train2017/Coco164kFull_Stuff_Coarse_7.txt   image ids used for training
  curated/val2017/Coco164kFull_Stuff_Coarse_7.txt     image ids used for evaluation
  images/{train2017,val2017}/<id>.jpg                 COCO 2017 images
  annotations/{train2017,val2017}/<id>.png            stuffthingmaps: fine ids 0..181, 255
  depth/{train2017,val2017}/<id>_zoedepth.png         written by python -m depthg_lib.depth"""

    def _split_location(self, split):
        return self.root / "curated" / self.split_dirs[split] / "Coco164kFull_Stuff_Coarse_7.txt"

    def _map_label(self, raw, path):
        return lookup_label(raw, fine_to_coarse(), path, "COCO-Stuff fine id (0..181)")


_IMG_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


class CityscapesReader(DatasetReader):
    """Cityscapes-27 in torchvision's `Cityscapes(mode="fine", target_type="semantic")` folders:
    as in STEGO, labelIds 7..33 are the classes 0..26 and lower ids ignore. A name is the file
    stem without suffix (`aachen_000000_000019`); its city is the part before the last two `_`."""

    name = "cityscapes"
    class_names = (  # labelIds 7..33
        "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail",
        "bridge", "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation",
        "terrain", "sky", "person", "rider", "car", "truck", "bus", "caravan", "trailer",
        "train", "motorcycle", "bicycle",
    )
    layout = {"image": "leftImg8bit/{split}/{city}/{name}" + _IMG_SUFFIX,
              "label": "gtFine/{split}/{city}/{name}" + _LABEL_SUFFIX,
              "depth": "depth/{split}/{city}/{name}_zoedepth.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   labelIds 0..33
  depth/{train,val}/<city>/<city>_<seq>_<frame>_zoedepth.png
                                        written by python -m depthg_lib.depth"""
    _label_ids = {i: i - 7 if i >= 7 else IGNORE for i in range(34)}

    def _fields(self, name):
        return {"city": name.rsplit("_", 2)[0]}

    def _split_location(self, split):
        return self.root / "leftImg8bit" / split

    def _list(self, split):
        folder = self._split_location(split)
        if not folder.is_dir():
            raise self._missing(split, folder)
        return [p.name[: -len(_IMG_SUFFIX)] for p in folder.glob(f"*/*{_IMG_SUFFIX}")]

    def _label_names(self, split, names):
        folder = self.root / "gtFine" / split
        return {p.name[: -len(_LABEL_SUFFIX)] for p in folder.glob(f"*/*{_LABEL_SUFFIX}")}

    def _map_label(self, raw, path):
        return lookup_label(raw, self._label_ids, path,
                            "Cityscapes labelId (0..33; is the file a *_labelIds.png?)")


def read_mat(path: Path, key: str) -> np.ndarray:
    """One array from a .mat file; a missing, corrupt or key-less file names itself."""
    import scipy.io  # heavy, and needed for Potsdam only

    try:
        content = scipy.io.loadmat(path)
    except FileNotFoundError:
        raise DepthGError(f"{path} does not exist") from None
    except Exception as err:  # scipy raises several unrelated types for a bad file
        raise DepthGError(f"cannot read {path} ({type(err).__name__}: {err}); replace or "
                          "delete the file, or pass --skip-bad to skip it") from None
    if key not in content:
        keys = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise DepthGError(f"{path} has no array {key!r} (found: {keys})")
    return np.asarray(content[key])


class PotsdamReader(DatasetReader):
    """Potsdam-3: the MATLAB files of the IIC preprocessing (RGB of `img`, infrared unused; `gt`),
    split lists `labelled_train.txt` (train) and `labelled_test.txt` (val). Classes as in STEGO:
    {0, 4} roads & cars, {1, 5} buildings & clutter, {2, 3} vegetation & trees, 255 ignore."""

    name = "potsdam"
    class_names = ("roads and cars", "buildings and clutter", "vegetation and trees")
    layout = {"image": "imgs/{name}.mat", "label": "gt/{name}.mat",
              "depth": "depth/{name}_zoedepth.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  labelled_train.txt                    ids of split train (one per line)
  labelled_test.txt                     ids of split val
  unlabelled_train.txt, all.txt         optional, not read
  imgs/<id>.mat                         key img: (H, W, 4), channels R, G, B, infrared
  gt/<id>.mat                           key gt: (H, W) ids 0..5, 255 = ignore
  depth/<id>_zoedepth.png               written by python -m depthg_lib.depth"""

    def _split_location(self, split):
        return self.root / {"train": "labelled_train.txt", "val": "labelled_test.txt"}[split]

    def load_image(self, split, name):
        """RGB uint8 from `img` (H, W, C ≥ 3), stored as uint8 or as float in [0, 1]."""
        path = self.image_path(split, name)
        rgb = read_mat(path, "img")
        if rgb.ndim != 3 or rgb.shape[-1] < 3:
            raise DepthGError(f"{path}: image array has shape {rgb.shape}; expected (H, W, 4)")
        rgb = rgb[..., :3]
        if rgb.dtype != np.uint8:
            rgb = rgb.astype(np.float64)
            if rgb.size and np.nanmax(rgb) <= 1.0:
                rgb = rgb * 255.0  # float images in [0, 1], as torchvision's to_pil_image expects
            rgb = np.nan_to_num(rgb).round().clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(rgb)

    def load_label(self, split, name):
        path = self.label_path(split, name)
        gt = read_mat(path, "gt")
        if gt.ndim != 2:
            raise DepthGError(f"label {path} has shape {gt.shape}; expected (H, W) class ids")
        return lookup_label(gt, {0: 0, 4: 0, 1: 1, 5: 1, 2: 2, 3: 2}, path,
                            "Potsdam class id (0..5)")


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
