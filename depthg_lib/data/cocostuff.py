"""COCO-Stuff-27 (docs/method.md §11): the curated STEGO subset, 182 fine ids mapped to 27
coarse ones.

Only the images in the curated lists `curated/<split_dir>/Coco164kFull_Stuff_Coarse_7.txt` are
used (as in STEGO and DepthG). Fine ids 0..181 are mapped to the 27 coarse classes of
`cocostuff27.json` (0..11 things, 12..26 stuff); 255 stays ignore.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from ..errors import DepthGError
from .base import DatasetReader, lookup_label

_CURATED = "Coco164kFull_Stuff_Coarse_7.txt"
MAPPING_FILE = Path(__file__).with_name("cocostuff27.json")

# The COCO-Stuff super-categories the 27 coarse ids stand for. Two stuff groups share a name
# with a thing group (food, furniture); a suffix keeps the names unique.
CLASS_NAMES = (
    "electronic", "appliance", "food", "furniture", "indoor", "kitchen", "accessory",
    "animal", "outdoor", "person", "sports", "vehicle",
    "ceiling", "floor", "food-stuff", "furniture-stuff", "rawmaterial", "textile", "wall",
    "window", "building", "ground", "plant", "sky", "solid", "structural", "water",
)


def fine_to_coarse() -> dict[int, int]:
    """COCO-Stuff fine id → coarse id, from the shipped `cocostuff27.json`."""
    table = json.loads(MAPPING_FILE.read_text())["fine_to_coarse"]
    return {int(k): int(v) for k, v in table.items()}


class CocoStuff27Reader(DatasetReader):
    """`images/<split_dir>/<id>.jpg`, `annotations/<split_dir>/<id>.png`, curated id lists."""

    name = "cocostuff27"
    n_classes = 27
    class_names = CLASS_NAMES
    split_dirs = {"train": "train2017", "val": "val2017"}
    layout = {"image": "images/{split}/{name}.jpg", "label": "annotations/{split}/{name}.png",
              "depth": "depth/{split}/{name}_zoedepth.png"}
    tree = """\
<root>/                                 profile: <data_root>/<dataset_dir>
  curated/train2017/Coco164kFull_Stuff_Coarse_7.txt   image ids used for training
  curated/val2017/Coco164kFull_Stuff_Coarse_7.txt     image ids used for evaluation
  images/{train2017,val2017}/<id>.jpg                 COCO 2017 images
  annotations/{train2017,val2017}/<id>.png            stuffthingmaps: fine ids 0..181, 255
  depth/{train2017,val2017}/<id>_zoedepth.png         written by python -m depthg_lib.depth"""

    @cached_property
    def _table(self) -> dict[int, int]:
        return fine_to_coarse()

    def _split_location(self, split):
        return self.root / "curated" / self.split_dirs[split] / _CURATED

    def _list(self, split):
        path = self._split_location(split)
        try:
            lines = path.read_text().split()
        except FileNotFoundError:
            raise self._missing(split, path, hint=" (the curated image list of STEGO)") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DepthGError(f"cannot read curated list {path} ({err})") from None
        names = [line.strip() for line in lines if line.strip()]
        if not names:
            raise DepthGError(f"curated list {path} is empty; expected one image id per line")
        return names

    def _map_label(self, raw, path):
        return lookup_label(raw, self._table, path, "COCO-Stuff fine id (0..181)")
