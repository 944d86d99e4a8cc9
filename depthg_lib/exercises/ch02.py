"""Exercises of chapter 02 · Five-crop: their self-checks (`exercises.check("02.1", ...)`)."""

from __future__ import annotations

import numpy as np

from ..crop import crop_array, dominant_class_share, five_crop_boxes
from .core import Wrong, as_dict, call, close_to, register, toy_labels, written


@register("02.1", "boxes(H, W, r): the five (top, left, h, w) crop boxes, torchvision's order",
           "code", "h = floor(r·H), w = floor(r·W) (not square!); corners TL, TR, BL, BR, then "
                   "the centre at round((H − h)/2), round((W − w)/2)")
def _check_02_1(fn):
    for h, w, r in ((61, 83, 0.5), (64, 64, 0.5), (100, 75, 0.4), (97, 130, 0.3)):
        got = call(fn, h, w, r)
        try:
            got = [tuple(int(v) for v in box) for box in got]
        except (TypeError, ValueError):
            raise Wrong("return a list of five (top, left, h, w) tuples of ints") from None
        want = five_crop_boxes(h, w, r)
        if len(got) != 5:
            raise Wrong(f"{len(got)} boxes, expected 5")
        if sorted(got) == sorted(want) and got != want:
            raise Wrong(f"right boxes, wrong order for {h}×{w}: torchvision's order is "
                         "top-left, top-right, bottom-left, bottom-right, centre")
        if got != want:
            raise Wrong(f"for H={h}, W={w}, r={r} got {got}")


@register("02.2", "By hand, for a 100×100 image and r = 0.4: the share of the image covered by "
                   "the five crops, and the share of the centre crop inside the top-left crop",
           "pen", "draw it: corners are 40×40, the centre crop spans rows and columns 30..70")
def _check_02_2(answer):
    a = as_dict(answer, ("coverage", "centre_corner_overlap"))
    masks = np.zeros((5, 100, 100), bool)
    for mask, (top, left, h, w) in zip(masks, five_crop_boxes(100, 100, 0.4)):
        mask[top:top + h, left:left + w] = True
    close_to(a["coverage"], masks.any(0).mean(), 0.005, "coverage")
    close_to(a["centre_corner_overlap"], (masks[0] & masks[4]).sum() / masks[4].sum(), 0.005,
             "centre_corner_overlap")


@register("02.3", "mean_dominant_share(labels, ratio): the mean dominant-class share of the "
                   "five crops of every label map", "code",
           "five_crop_boxes + crop_array for each map, dominant_class_share for each crop, "
           "np.nanmean over all crops")
def _check_02_3(fn):
    labels = toy_labels(8, n=4, h=20, w=26, classes=4)
    whole = {"that is the share of the whole maps: cut the five crops first":
             np.nanmean([dominant_class_share(x) for x in labels])}
    for ratio in (0.3, 0.5, 1.0):
        want = np.nanmean([dominant_class_share(crop_array(lab, b)) for lab in labels
                           for b in five_crop_boxes(*lab.shape, ratio=ratio)])
        close_to(call(fn, labels.copy(), ratio), want, 1e-6,
                 f"mean_dominant_share (ratio {ratio})", mistakes=whole)


written("02.4", "Why is crop k of image i stored as number 5i + k, and who relies on it?",
         "pen", "chapter 03 must tell a crop's siblings from other images' crops")
