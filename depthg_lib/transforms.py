"""The one resize-and-centre-crop every stage uses (training, kNN, evaluation, figures).

STEGO's input transform is torchvision's `Resize(size)` (shorter side → size, longer side
`int(size · long / short)`) followed by `CenterCrop(size)` (offsets `int(round(margin / 2))`,
Python's round: halves go to the even neighbour). `resize_geometry` is that arithmetic, so
training crops, kNN inputs and evaluation images are cut at the same pixel.

Resampling: `nearest` as released (golden README note 7), `bilinear` for the corrected
fidelity. A numpy array is resampled with PIL (uint8 stays uint8, as the loaders did); a
float tensor (C,H,W) with torch (`nearest-exact`, which equals PIL's nearest, or bilinear with
antialiasing), as the kNN stage has always done.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import DepthGError

RESAMPLE_MODES = ("nearest", "bilinear")


def resize_geometry(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(resized height, resized width, top, left) of Resize(size) + CenterCrop(size)."""
    if height <= width:
        nh, nw = size, int(size * width / height)
    else:
        nh, nw = int(size * height / width), size
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return nh, nw, top, left


def resize_center_crop(x, size: int, mode: str = "nearest"):
    """Shorter side → `size`, then the centre `size`×`size` (STEGO's Resize + CenterCrop).

    `x`: a numpy array (H, W) or (H, W, C) — resampled with PIL, same dtype out — or a float
    tensor (C, H, W) — resampled with torch. `mode`: "nearest" or "bilinear".
    """
    if mode not in RESAMPLE_MODES:
        raise DepthGError(f"resize mode must be one of {RESAMPLE_MODES}, got {mode!r}")
    if isinstance(x, torch.Tensor):
        h, w = x.shape[-2:]
        nh, nw, top, left = resize_geometry(h, w, size)
        if (nh, nw) != (h, w):
            batch = x[None].float()
            if mode == "nearest":
                batch = F.interpolate(batch, size=(nh, nw), mode="nearest-exact")
            else:
                batch = F.interpolate(batch, size=(nh, nw), mode="bilinear",
                                      align_corners=False, antialias=True).clamp(0, 1)
            x = batch[0]
        return x[:, top:top + size, left:left + size]
    arr = np.asarray(x)
    h, w = arr.shape[:2]
    nh, nw, top, left = resize_geometry(h, w, size)
    if (nh, nw) != (h, w):
        method = Image.NEAREST if mode == "nearest" else Image.BILINEAR
        arr = np.asarray(Image.fromarray(arr).resize((nw, nh), method))
    return np.ascontiguousarray(arr[top:top + size, left:left + size])
