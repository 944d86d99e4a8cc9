"""What evaluation reads: a labelled split, checked by `open_split`, resized and centre-cropped
(docs/method.md §9)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .config import Profile
from .data import reader_for_profile
from .errors import DepthGError
from .transforms import resize_center_crop


def resize_crop(image: np.ndarray, size: int, label: np.ndarray | None = None,
                image_mode: str = "nearest") -> tuple[np.ndarray, np.ndarray | None]:
    """An evaluation image (and its label, always nearest) resized and centre-cropped (§9)."""
    out_label = None if label is None else resize_center_crop(label, size, "nearest")
    return resize_center_crop(image, size, image_mode), out_label


def to_tensor(images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) → float (B, 3, H, W) in [0, 1], what the backbones take."""
    arr = np.stack([np.asarray(im) for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def size_mismatch(label_path, label_hw, image_path, image_hw) -> DepthGError:
    """The one error for a label that does not cover its image pixel for pixel."""
    return DepthGError(
        f"label {label_path} is {label_hw[1]}×{label_hw[0]} pixels but its image {image_path} "
        f"is {image_hw[1]}×{image_hw[0]}; a label must cover its image pixel for pixel — "
        "replace the label (or the image) with one of the same size, or remove both")


def _file_size(path) -> tuple[int, int] | None:
    """(height, width) from an image file's header (no decoding); None if it cannot say."""
    try:
        with Image.open(path) as img:
            return img.size[1], img.size[0]
    except (OSError, ValueError, SyntaxError):
        return None  # reading the file later names it


def open_split(profile: Profile, split: str):
    """(reader, names) of a split with labels, `n_classes` classes and labels as large as their
    images (a smaller one would be scored against the wrong pixels)."""
    reader = reader_for_profile(profile)
    if not reader.has_labels:
        raise DepthGError(f"the {profile.dataset} data in {profile.paths.dataset_dir} has no "
                          "labels, so it cannot be scored; use `python -m depthg_lib.predict "
                          "FOLDER --out DIR` to segment unlabelled images")
    if reader.n_classes and reader.n_classes != profile.n_classes:
        raise DepthGError(f"profile {profile.name} has n_classes {profile.n_classes} but the "
                          f"{profile.dataset} data in {profile.paths.dataset_dir} has "
                          f"{reader.n_classes} classes; fix n_classes in {profile.source}")
    names = list(reader.names(split))
    if not names:
        raise DepthGError(f"split {split!r} of {profile.paths.dataset_dir} holds no images; "
                          "check the data with: python -m depthg_lib.data check --dataset "
                          f"{profile.dataset} --root {profile.paths.dataset_dir}")
    for name in names:  # file headers only: seconds for thousands
        lp, ip = reader.label_path(split, name), reader.image_path(split, name)
        label_hw = None if lp is None else _file_size(lp)
        image_hw = None if label_hw is None else _file_size(ip)
        if image_hw is not None and image_hw != label_hw:
            raise size_mismatch(lp, label_hw, ip, image_hw)
    return reader, names


def split_inputs(reader, split: str) -> dict:
    """Digests of the split's images and labels, {} for a reader that cannot say."""
    stamps = getattr(reader, "input_stamps", None)
    return stamps(split, ("images", "labels")) if callable(stamps) else {}


class EvalSet(torch.utils.data.Dataset):
    """Validation images and labels, resized and centre-cropped (§9)."""

    def __init__(self, reader, split, names, size, image_mode):
        self.reader, self.split, self.names = reader, split, names
        self.size, self.image_mode = size, image_mode

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        name = self.names[i]
        label = self.reader.load_label(self.split, name)
        if label is None:
            raise DepthGError(f"image {name} of split {self.split!r} has no label file; an "
                              "evaluation split must be fully labelled")
        image = self.reader.load_image(self.split, name)
        if image.shape[:2] != label.shape[:2]:
            where = getattr(self.reader, "label_path", None)
            raise size_mismatch(where(self.split, name) if where else f"of {name}",
                                label.shape[:2], name, image.shape[:2])
        return resize_crop(image, self.size, label, self.image_mode)


def collate(batch):
    images, labels = zip(*batch)
    return np.stack(images), np.stack(labels)


def make_loader(profile, reader, split, names, batch_size):
    """Batches (uint8 images (B,H,W,3), labels (B,H,W)) of the split at `eval_res`."""
    image_mode = "nearest" if profile.fidelity == "released" else "bilinear"
    dataset = EvalSet(reader, split, names, profile.eval_res, image_mode)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                       num_workers=profile.num_workers, collate_fn=collate)


def as_targets(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Labels as int64 class ids, −1 where ignored (255) or outside 0..n_classes−1."""
    labels = labels.astype(np.int64)
    labels[(labels < 0) | (labels >= n_classes)] = -1
    return labels


def class_names(reader, n: int) -> list[str]:
    names = list(getattr(reader, "class_names", None) or [])
    return names[:n] if len(names) >= n else [f"class {k}" for k in range(n)]

