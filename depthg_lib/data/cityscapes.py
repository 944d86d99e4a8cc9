"""Cityscapes-27 (docs/method.md §11): torchvision's fine/semantic layout, class = labelId − 7.

As in STEGO, the labelIds 7..33 become the 27 classes 0..26 and the ids below 7 (unlabeled,
ego vehicle, rectification border, out of roi, static, dynamic, ground) become ignore. A name
is the file stem without its suffix, e.g. `aachen_000000_000019`; its city is the part before
the last two `_`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import IGNORE, DatasetReader, lookup_label

_IMG_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
FIRST_ID = 7

# Cityscapes labels with ids 7..33, in id order.
CLASS_NAMES = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail",
    "bridge", "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train",
    "motorcycle", "bicycle",
)
# labelIds 7..33 → classes 0..26, the ids below 7 → ignore
_LABEL_IDS = {i: i - FIRST_ID if i >= FIRST_ID else IGNORE
              for i in range(FIRST_ID + len(CLASS_NAMES))}


class CityscapesReader(DatasetReader):
    """torchvision `Cityscapes(mode="fine", target_type="semantic")` folders."""

    name = "cityscapes"
    n_classes = 27
    class_names = CLASS_NAMES
    layout = {"image": "leftImg8bit/{split}/{city}/{name}" + _IMG_SUFFIX,
              "label": "gtFine/{split}/{city}/{name}" + _LABEL_SUFFIX,
              "depth": "depth/{split}/{city}/{name}_zoedepth.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
  gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   labelIds 0..33
  depth/{train,val}/<city>/<city>_<seq>_<frame>_zoedepth.png
                                        written by python -m depthg_lib.depth"""

    def _fields(self, name):
        return {"city": name.rsplit("_", 2)[0]}

    def _split_location(self, split):
        return self.root / "leftImg8bit" / split

    def _list(self, split):
        folder = self._split_location(split)
        if not folder.is_dir():
            raise self._missing(split, folder)
        return [p.name[: -len(_IMG_SUFFIX)] for p in folder.glob(f"*/*{_IMG_SUFFIX}")]

    def _label_names(self, split):
        folder = self.root / "gtFine" / split
        if not folder.is_dir():
            return set()
        return {p.name[: -len(_LABEL_SUFFIX)] for p in folder.glob(f"*/*{_LABEL_SUFFIX}")}

    def _map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return lookup_label(raw, _LABEL_IDS, path,
                            "Cityscapes labelId (0..33; is the file a *_labelIds.png?)")
