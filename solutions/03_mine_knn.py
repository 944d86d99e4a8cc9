"""Reference solutions, chapter 03 · Mine kNN (`depthg_lib.exercises` checks them)."""

import numpy as np


def chance(majority):
    """03.1 — P(two distinct random crops share their majority class), unlabelled (−1) out.

    Pick the first crop: class c with probability n_c/m; the second among the other m − 1
    crops: (n_c − 1)/(m − 1). Sum over c: Σ n_c(n_c − 1) / (m(m − 1)).
    """
    valid = np.asarray(majority)
    valid = valid[valid >= 0]
    m = len(valid)
    counts = np.bincount(valid).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (m * (m - 1)))


def knn(features, k):
    """03.2 — brute-force cosine kNN: row i = [i, its k most similar other items]."""
    g = np.asarray(features, dtype=np.float64)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = g @ g.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.concatenate([np.arange(len(g))[:, None], order], axis=1)


def purity(nns, majority, k, groups):
    """03.3 — share of (crop, neighbour) pairs in columns 1..k with the same majority class,
    pairs of crops of one image (same group) and unlabelled crops (−1) left out."""
    nns, majority, groups = np.asarray(nns), np.asarray(majority), np.asarray(groups)
    q, nb = majority[nns[:, :1]], majority[nns[:, 1:k + 1]]
    keep = (q >= 0) & (nb >= 0) & (groups[nns[:, :1]] != groups[nns[:, 1:k + 1]])
    return float((q == nb)[keep].mean())


ANSWERS = {"03.1": chance, "03.2": knn, "03.3": purity}

WRITTEN = {
    "03.3": "Purity falls as k grows: the first neighbours are the most similar. Chapter 04 "
            "draws a crop's positive among its first knn_k neighbours, so the purity at knn_k "
            "(not at 1) is the share of positive pairs that pull two crops of the same class "
            "together; the rest pull different classes together. Compare every value with "
            "the chance line: a backbone is useful for mining only as far as it beats chance "
            "across images.",
    "03.4": "Pairs inside one image (intra) teach the head to give points of one region of one "
            "image similar codes, but nothing ties grass in image A to grass in image B: two "
            "images could use different code directions for the same class, and a cluster "
            "probe shared by all images would then split one class. A kNN positive is a "
            "*different* image that the backbone finds similar as a whole; the inter term "
            "copies the feature correlation *between* the two images into the codes, so "
            "points that the backbone finds alike across images get alike codes. That is "
            "what makes the codes clusterable with one set of centroids for the whole dataset. "
            "Negatives (random other images, mostly unrelated) push codes apart where the "
            "features disagree, so that nothing collapses to one code.",
}
