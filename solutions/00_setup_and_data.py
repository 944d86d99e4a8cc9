"""Reference solutions, chapter 00 · Setup and data (`depthg_lib.exercises` checks them)."""

import numpy as np

IGNORE = 255


def class_shares(labels, n_classes):
    """00.1 — share of the labelled pixels in each class; ignored pixels (255) are left out."""
    values = np.asarray(labels).ravel()
    values = values[values != IGNORE].astype(np.int64)
    return np.bincount(values, minlength=n_classes)[:n_classes] / max(values.size, 1)


def majority_baseline(shares):
    """00.2 — Acc and mIoU (percent) of painting every pixel with the most frequent class.

    Every pixel is predicted as the majority class c*. Its IoU is tp/(tp + fp + fn) with
    tp = p* N, fp = (1 − p*) N (every other pixel), fn = 0: IoU = p*. Every other class that
    occurs has tp = 0 and fn > 0: IoU = 0. A class that neither occurs nor is predicted has
    no IoU and is left out of the mean. So Acc = p*, mIoU = p* / K_present.
    """
    shares = np.asarray(shares, dtype=np.float64)
    p = shares.max()
    return 100 * p, 100 * p / int((shares > 0).sum())


def thing_share(labels, thing_ids):
    """00.3 — share of the labelled pixels that belong to a thing class."""
    labels = np.asarray(labels)
    valid = labels != IGNORE
    return float(np.isin(labels, list(thing_ids))[valid].mean())


ANSWERS = {"00.1": class_shares, "00.2": majority_baseline, "00.3": thing_share}

WRITTEN = {
    "00.2": majority_baseline.__doc__,
    "00.3": "The share is the chance baseline for chapter 04's FPS measurement: points drawn "
            "uniformly at random land on things about this often. On SynthScenes most pixels "
            "are stuff (sky, ground materials, walls), so the share is small: FPS's promise "
            "is to put more of the S×S training points on the few thing pixels.",
    "00.4": "Unsupervised means the head's parameters never depend on labels: no label may "
            "enter the loss, the choice of training points or the choice of kNN partners. "
            "Labels may be read afterwards, to *measure* (purity, AUROC, mIoU), because a "
            "measurement changes no parameter. One exception is declared openly: the linear "
            "probe is trained with labels, but on the detached code, so it only measures how "
            "much class information the code holds. A number tuned on the validation labels "
            "(e.g. choosing shifts by validation mIoU) leaks them into the method and must be "
            "reported as such (docs/reproduction.md §5 says so for the embedded shifts).",
}
