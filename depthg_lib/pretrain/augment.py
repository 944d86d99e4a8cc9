"""Batched multi-crop augmentations on CPU tensors, driven by one `torch.Generator`.

Everything works on a whole batch at once (crop-and-resize with `roi_align`, per-image colour
jitter as broadcast arithmetic) so that augmenting costs little next to the ViT, and a run is
reproducible from its seed: all randomness comes from the generator saved in the checkpoint.
Images are float (B,3,H,W) in [0,1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _coin(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def random_resized_crop(images: torch.Tensor, idx: torch.Tensor, size: int,
                        scale: tuple[float, float], gen: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop a box of area fraction in `scale` from `images[idx]`, resize to size×size, flip p=.5;
    also the boxes (n, 4: x0, y0, x1, y1 in source pixels) and flip flags (n,)."""
    n = len(idx)
    h, w = images.shape[-2:]
    area = _uniform(n, *scale, gen) * h * w
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen)
    bw = (area * log_r.exp()).sqrt().clamp(max=w)
    bh = (area / log_r.exp()).sqrt().clamp(max=h)
    x0 = torch.rand(n, generator=gen) * (w - bw)
    y0 = torch.rand(n, generator=gen) * (h - bh)
    boxes = torch.stack([idx.float(), x0, y0, x0 + bw, y0 + bh], dim=1)
    # sampling_ratio=2 averages 2x2 bilinear samples per output pixel: a cheap anti-alias.
    out = roi_align(images, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2,
                    aligned=True)
    flip = _coin(n, 0.5, gen)
    return torch.where(flip[:, None, None, None], out.flip(-1), out), boxes[:, 1:], flip


def correspondence(src_boxes: torch.Tensor, src_flip: torch.Tensor, dst_boxes: torch.Tensor,
                   dst_flip: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the patch centres of view `src` (grid×grid patches) fall in view `dst`: grid_sample
    coordinates (n, grid, grid, 2) in [-1, 1] (align_corners=False), and which lie inside."""
    c = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid  # patch centres in [0,1]
    u = c.view(1, 1, grid).expand(len(src_boxes), grid, grid)
    v = c.view(1, grid, 1).expand(len(src_boxes), grid, grid)
    u = torch.where(src_flip[:, None, None], 1 - u, u)
    s, d = src_boxes[:, :, None, None], dst_boxes[:, :, None, None]
    x = s[:, 0] + (s[:, 2] - s[:, 0]) * u  # source-image coordinates
    y = s[:, 1] + (s[:, 3] - s[:, 1]) * v
    dx = (x - d[:, 0]) / (d[:, 2] - d[:, 0])
    dy = (y - d[:, 1]) / (d[:, 3] - d[:, 1])
    dx = torch.where(dst_flip[:, None, None], 1 - dx, dx)
    inside = (dx >= 0) & (dx <= 1) & (dy >= 0) & (dy <= 1)
    return torch.stack([dx, dy], dim=-1) * 2 - 1, inside


_GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def color_jitter(x: torch.Tensor, gen: torch.Generator, brightness: float, contrast: float,
                 saturation: float, hue: float, p: float = 0.8) -> torch.Tensor:
    """Brightness, contrast, saturation, then a hue rotation (in YIQ), each image its own draw."""
    n = x.shape[0]
    on = _coin(n, p, gen).float().view(n, 1, 1, 1)

    def factor(r: float) -> torch.Tensor:
        f = _uniform(n, 1 - r, 1 + r, gen).view(n, 1, 1, 1)
        return on * f + (1 - on)

    x = x * factor(brightness)
    grey_mean = (x * _GREY).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    x = (x - grey_mean) * factor(contrast) + grey_mean
    grey = (x * _GREY).sum(1, keepdim=True)
    x = (x - grey) * factor(saturation) + grey
    theta = _uniform(n, -hue, hue, gen) * 2 * math.pi * on.view(n)
    cos, sin = theta.cos(), theta.sin()
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = _YIQ2RGB @ rot @ _RGB2YIQ  # (n,3,3)
    x = torch.einsum("nij,njhw->nihw", m, x)
    return x.clamp(0, 1)


def gaussian_blur(x: torch.Tensor, gen: torch.Generator, p: float,
                  sigma: tuple[float, float] = (0.1, 1.0)) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (5-tap kernel: these images are small)."""
    n = x.shape[0]
    s = _uniform(n, *sigma, gen).view(n, 1)
    taps = torch.arange(-2, 3, dtype=x.dtype).view(1, 5)
    k = torch.exp(-0.5 * (taps / s) ** 2)
    k = k / k.sum(1, keepdim=True)
    k = torch.where(_coin(n, p, gen)[:, None], k, torch.tensor([[0, 0, 1.0, 0, 0]]))
    kk = k.repeat_interleave(3, 0)  # (3n, 5)
    y = x.reshape(1, 3 * n, *x.shape[-2:])
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="reflect"), kk.view(3 * n, 1, 1, 5), groups=3 * n)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="reflect"), kk.view(3 * n, 1, 5, 1), groups=3 * n)
    return y.view_as(x)


def dino_view(images: torch.Tensor, idx: torch.Tensor, size: int, scale: tuple[float, float],
              gen: torch.Generator, blur_p: float, solarize_p: float,
              jitter: tuple[float, float, float, float], grey_p: float):
    """One DINO view of `images[idx]`: crop+flip, colour jitter (brightness, contrast,
    saturation, hue), grey, blur, solarize; also the crop boxes and flip flags."""
    v, boxes, flip = random_resized_crop(images, idx, size, scale, gen)
    v = color_jitter(v, gen, *jitter)
    grey = (v * _GREY).sum(1, keepdim=True).expand_as(v)
    v = torch.where(_coin(v.shape[0], grey_p, gen)[:, None, None, None], grey, v)
    v = gaussian_blur(v, gen, blur_p)
    on = _coin(v.shape[0], solarize_p, gen)[:, None, None, None]
    return torch.where(on & (v >= 0.5), 1 - v, v), boxes, flip


def view_pair(image: np.ndarray, seed: int = 0, size: int = 64, patch: int = 8,
              scale: tuple[float, float] = (0.16, 0.64)) -> dict:
    """Two random crops of one (H,W,3) uint8 image (geometry only) and where each patch of view 1
    lies in view 2: the pairs the local VICRegL term pulls together (A1's figure). Keys: views
    (2 of size×size×3 in [0,1]), boxes, flips, xy, inside."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    idx = torch.zeros(1, dtype=torch.long)
    crops = [random_resized_crop(x, idx, size, scale, gen) for _ in range(2)]
    (_, b1, f1), (_, b2, f2) = crops
    xy, inside = correspondence(b1, f1, b2, f2, size // patch)
    return {"views": [v[0].permute(1, 2, 0).numpy() for v, _, _ in crops],
            "boxes": [b1[0], b2[0]], "flips": [f1, f2], "xy": xy[0].numpy(),
            "inside": inside[0].numpy()}
