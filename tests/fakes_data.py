"""Tiny fake copies of every dataset layout, in real file formats, for the reader/crop tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

SYNTH_CLASSES = [{"name": f"class{i}", "color": [20 * i, 100, 200 - 10 * i],
                  "is_thing": i >= 6} for i in range(12)]


def _rgb(rng, h, w):
    """A smooth random picture (JPEG keeps it close; noise would not survive re-encoding)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    a = rng.uniform(0, 6, (3, 3))
    channels = [127 + 120 * np.sin(a[c, 0] * x + a[c, 1] * y + a[c, 2]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _save(path: Path, array: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kw)
    return path


def make_synth(root: Path, n_train=3, n_val=2, size=(24, 32), seed=0, n_classes=12) -> Path:
    """SynthScenes layout: imgs/, labels/, depth_gt/, synthscenes.json."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            name = f"{split}_{i:05d}"
            _save(root / "imgs" / split / f"{name}.jpg", _rgb(rng, h, w), quality=95)
            label = rng.integers(0, n_classes, (h, w)).astype(np.uint8)
            label[0, :3] = 255
            _save(root / "labels" / split / f"{name}.png", label)
            depth = rng.uniform(1, 100, (h, w)).astype(np.float32)
            (root / "depth_gt" / split).mkdir(parents=True, exist_ok=True)
            np.save(root / "depth_gt" / split / f"{name}.npy", depth)
    (root / "synthscenes.json").write_text(json.dumps({"classes": SYNTH_CLASSES[:n_classes]}))
    return root


def write_depth(reader, splits=None, seed=1) -> int:
    """What the depth stage would write: per-image min–max normalised depth as 16-bit PNG."""
    rng = np.random.default_rng(seed)
    count = 0
    for split in splits or reader.splits:
        if split != "train" and not (reader.root / "imgs" / split).is_dir() \
                and reader.name == "synthscenes":
            continue  # a SynthScenes folder generated without a val split
        for name in reader.names(split):
            gt = reader.load_gt_depth(split, name)
            if gt is None:
                h, w = reader.load_image(split, name).shape[:2]
                gt = rng.uniform(0, 1, (h, w))
            d = (gt - gt.min()) / max(gt.max() - gt.min(), 1e-9)
            _save(reader.depth_path(split, name), (d * 65535).round().astype(np.uint16))
            count += 1
    return count


COCO_IDS = {"train": ["000000000009", "000000000025", "000000000030"],
            "val": ["000000000139", "000000000285"]}


def make_coco(root: Path, seed=0, size=(20, 28)) -> Path:
    """COCO-Stuff layout: curated lists, images/, annotations/ (fine ids; an extra one unlisted)."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, ids in COCO_IDS.items():
        sdir = {"train": "train2017", "val": "val2017"}[split]
        lst = root / "curated" / sdir / "Coco164kFull_Stuff_Coarse_7.txt"
        lst.parent.mkdir(parents=True, exist_ok=True)
        lst.write_text("\n".join(ids) + "\n")
        for i in ids + ["000000999999"]:  # the last one: in COCO but not curated
            _save(root / "images" / sdir / f"{i}.jpg", _rgb(rng, h, w), quality=95)
            fine = rng.integers(0, 182, (h, w)).astype(np.uint8)
            fine[:2, :2] = 255
            _save(root / "annotations" / sdir / f"{i}.png", fine)
    return root


CITY_NAMES = {"train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
              "val": ["frankfurt_000000_000294", "lindau_000000_000019"]}


def make_cityscapes(root: Path, seed=0, size=(16, 32)) -> Path:
    """torchvision Cityscapes fine layout: leftImg8bit/, gtFine/*_labelIds.png."""
    rng = np.random.default_rng(seed)
    h, w = size
    for split, names in CITY_NAMES.items():
        for name in names:
            city = name.split("_")[0]
            _save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _rgb(rng, h, w))
            ids = rng.integers(0, 34, (h, w)).astype(np.uint8)
            _save(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", ids)
            _save(root / "gtFine" / split / city / f"{name}_gtFine_color.png", _rgb(rng, h, w))
    return root


POTSDAM_IDS = {"train": ["1", "2", "3"], "val": ["10", "11"]}


def make_potsdam(root: Path, seed=0, size=(20, 20)) -> Path:
    """Potsdam layout: imgs/<id>.mat (img, H×W×4), gt/<id>.mat (gt), split lists."""
    import scipy.io

    rng = np.random.default_rng(seed)
    h, w = size
    (root / "imgs").mkdir(parents=True, exist_ok=True)
    (root / "gt").mkdir(parents=True, exist_ok=True)
    for split, ids in POTSDAM_IDS.items():
        (root / {"train": "labelled_train.txt", "val": "labelled_test.txt"}[split]).write_text(
            "\n".join(ids) + "\n")
        for i in ids:
            scipy.io.savemat(root / "imgs" / f"{i}.mat",
                             {"img": rng.integers(0, 256, (h, w, 4), dtype=np.uint8)})
            gt = rng.integers(0, 6, (h, w)).astype(np.uint8)
            gt[0, 0] = 255
            scipy.io.savemat(root / "gt" / f"{i}.mat", {"gt": gt})
    (root / "unlabelled_train.txt").write_text("99\n")
    (root / "all.txt").write_text("\n".join(POTSDAM_IDS["train"] + POTSDAM_IDS["val"]) + "\n")
    return root


def make_directory(root: Path, seed=0) -> Path:
    """A user's folder: nested, mixed formats and modes, plus a depth/ folder to be ignored."""
    rng = np.random.default_rng(seed)
    _save(root / "b.jpg", _rgb(rng, 20, 30), quality=90)
    _save(root / "holiday" / "a.png", _rgb(rng, 18, 22))
    _save(root / "holiday" / "grey.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    rgba = rng.integers(0, 256, (12, 14, 4), dtype=np.uint8)
    _save(root / "holiday" / "deep" / "alpha.png", rgba)
    (root / "notes.txt").write_text("not an image")
    _save(root / "depth" / "train" / "b.png", np.zeros((20, 30), dtype=np.uint16))
    return root
