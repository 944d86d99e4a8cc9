"""The one resize-and-centre-crop every stage uses, STEGO's `Resize` then `CenterCrop` (offsets
round half to even): numpy arrays through PIL, float tensors through torch (`nearest-exact`
equals PIL's nearest)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resize_center_crop(x, size: int, mode: str = "nearest"):
    """Shorter side → `size`, then the centre `size`×`size` of a numpy array (H, W[, C]) or a
    float tensor (C, H, W); `mode` "nearest" (as released) or "bilinear"."""
    tensor = isinstance(x, torch.Tensor)
    h, w = x.shape[-2:] if tensor else np.shape(x)[:2]
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    if tensor:
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
    if (nh, nw) != (h, w):
        method = Image.NEAREST if mode == "nearest" else Image.BILINEAR
        arr = np.asarray(Image.fromarray(arr).resize((nw, nh), method))
    return np.ascontiguousarray(arr[top:top + size, left:left + size])
