"""Potsdam-3 (docs/method.md §11): MATLAB files from the IIC preprocessing, 6 classes merged into 3.

`imgs/<id>.mat` holds `img` with 4 channels (R, G, B, infrared; only RGB is used) and
`gt/<id>.mat` holds `gt`. Split lists at the top: `labelled_train.txt` (our `train`),
`labelled_test.txt` (our `val`); `unlabelled_train.txt` and `all.txt` are not read. Classes as
in STEGO: {0, 4} → 0 roads & cars, {1, 5} → 1 buildings & clutter, {2, 3} → 2 vegetation &
trees, 255 → ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DepthGError
from .base import DatasetReader, lookup_label

_LISTS = {"train": "labelled_train.txt", "val": "labelled_test.txt"}
SIX_TO_THREE = {0: 0, 4: 0, 1: 1, 5: 1, 2: 2, 3: 2}
CLASS_NAMES = ("roads and cars", "buildings and clutter", "vegetation and trees")


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


def mat_to_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C≥3), uint8 or float in [0, 1] → RGB uint8 (H, W, 3)."""
    if array.ndim != 3 or array.shape[-1] < 3:
        raise DepthGError(f"{path}: image array has shape {array.shape}; expected (H, W, 4)")
    rgb = array[..., :3]
    if rgb.dtype != np.uint8:
        rgb = rgb.astype(np.float64)
        if rgb.size and np.nanmax(rgb) <= 1.0:
            rgb = rgb * 255.0  # float images in [0, 1], as torchvision's to_pil_image expects
        rgb = np.nan_to_num(rgb).round().clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


class PotsdamReader(DatasetReader):
    """`imgs/<id>.mat`, `gt/<id>.mat`, split lists `labelled_train.txt`, `labelled_test.txt`."""

    name = "potsdam"
    n_classes = 3
    class_names = CLASS_NAMES
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
        return self.root / _LISTS[split]

    def _list(self, split):
        path = self._split_location(split)
        try:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            raise self._missing(split, path) from None
        if not names:
            raise DepthGError(f"split list {path} is empty; expected one image id per line")
        return names

    def load_image(self, split, name):
        path = self.image_path(split, name)
        return mat_to_rgb(read_mat(path, "img"), path)

    def load_label(self, split, name):
        path = self.label_path(split, name)
        gt = read_mat(path, "gt")
        if gt.ndim != 2:
            raise DepthGError(f"label {path} has shape {gt.shape}; expected (H, W) class ids")
        return lookup_label(gt, SIX_TO_THREE, path, "Potsdam class id (0..5)")
