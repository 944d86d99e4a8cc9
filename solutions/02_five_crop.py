"""Reference solutions, chapter 02 · Five-crop (`depthg_lib.exercises` checks them)."""

import numpy as np

from depthg_lib.crop import crop_array, dominant_class_share, five_crop_boxes


def boxes(H, W, r):
    """02.1 — torchvision's five-crop boxes (top, left, h, w): TL, TR, BL, BR, centre."""
    h, w = int(r * H), int(r * W)
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return [(0, 0, h, w), (0, W - w, h, w), (H - h, 0, h, w), (H - h, W - w, h, w),
            (top, left, h, w)]


# 02.2 — corners 40×40 cover 4·1600 = 6400 px; the centre crop (rows/cols 30..70) adds its
# 1600 px minus the 4·(10·10) it shares with the corners: 6400 + 1200 = 7600 of 10 000.
# The top-left corner holds rows/cols 30..40 of the centre crop: 100 of its 1600 px.
COVERAGE = {"coverage": 0.76, "centre_corner_overlap": 100 / 1600}


def mean_dominant_share(labels, ratio):
    """02.3 — mean share of the most frequent class over the five crops of every label map."""
    shares = [dominant_class_share(crop_array(lab, b)) for lab in labels
              for b in five_crop_boxes(*np.asarray(lab).shape[:2], ratio=ratio)]
    return float(np.nanmean(shares))


ANSWERS = {"02.1": boxes, "02.2": COVERAGE, "02.3": mean_dominant_share}

WRITTEN = {
    "02.2": "coverage 0.76, centre/top-left overlap 1/16 = 0.0625. With r = 0.5 the corners "
            "tile an even-sized image exactly (coverage 1) and the centre crop overlaps each "
            "corner by a quarter of its area — so every pixel is seen at least once and the "
            "centre region twice.",
    "02.3": "The dominant share grows as the ratio shrinks (a smaller window holds fewer "
            "classes) and is highest for the smallest crops; but a very small crop also "
            "holds less context for the backbone and fewer points for the S×S grid. r = 0.5 "
            "is the papers' compromise. Plot the mean share against r in (0.3, 0.4, 0.5, "
            "0.7, 1.0) on the run's training labels to see the curve.",
    "02.4": "Crop n = 5i + k lets any later stage recover the source image as n // 5 without "
            "a lookup table. Chapter 03 uses it to leave out a crop's siblings (the other "
            "four crops of its own image): they overlap it, so they would be 'good' "
            "neighbours for free and carry no information across images.",
}
