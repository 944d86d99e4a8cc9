"""Reference solutions, chapter 04 · Train DepthG (`depthg_lib.exercises` checks them)."""

import torch
import torch.nn.functional as F


def dL_dC(C, Fc, s, zero_clamp=True):
    """04.1 — gradient of L = −clamp(C, m)·(F − s) with respect to C.

    Where C is above the clamp's floor, L = −C·(F − s) and dL/dC = −(F − s). Where the clamp
    holds C at m (C < 0 with zero_clamp), L does not depend on C: the gradient is 0.
    """
    C, Fc = torch.as_tensor(C), torch.as_tensor(Fc)
    grad = -(Fc - s)
    if zero_clamp:
        grad = torch.where(C > 0, grad, torch.zeros_like(grad))
    return grad


def fate(C, Fc, s):
    """04.2 — a descent step moves C by −η·dL/dC = +η·(F − s) where C > 0 (zero_clamp)."""
    if C <= 0 or Fc == s:
        return "ignored"
    return "attracted" if Fc > s else "repelled"


# 04.3 — F ≈ 1 within a half, ≈ 0 across. s = −0.5: F − s > 0 for every pair, every pair
# attracts, C → 1 everywhere (collapse). s = 0.5: within pairs attract, across pairs repel
# (separate: the two regions get two codes). s = 1.5: F − s < 0 everywhere, every pair is
# pushed down until C ≤ 0, where zero_clamp stops it (scatter: no region holds together).
SHIFT_OUTCOMES = {-0.5: "collapse", 0.5: "separate", 1.5: "scatter"}


def cluster_probe(codes, centroids):
    """04.4 — STEGO's cluster probe: cosine of each pixel's code to each centroid; a pixel is
    assigned to its most similar centroid; loss = −mean over pixels of that similarity."""
    sim = torch.einsum("bchw,kc->bkhw", F.normalize(codes, dim=1), F.normalize(centroids, dim=1))
    best = sim.max(dim=1)
    return -best.values.mean(), best.indices


# 04.5 — every unprojected point (X, Y, Z) is d times a vector fixed by the pixel, so d → 4d
# scales all pairwise distances by 4 and every argmax of FPS is unchanged. d + 0.5 moves near
# points relatively more than far ones, d² bends depths: both change the distances unevenly.
FPS_INVARIANCE = {"scale": True, "offset": False, "square": False}


def effective_shift(w_intra, s_intra, w_depth, s_depth):
    """04.6 — the released depth term with D ≡ 1 is an intra term with a lower shift.

    Both terms pair an image with itself at the same points, so with C⁺ = clamp(C, 0):
    w_i·(−C⁺(F − s_i)) + w_d·(−C⁺(1 − s_d)) = w_i·(−C⁺(F − s')), s' = s_i − w_d(1 − s_d)/w_i.
    """
    return s_intra - w_depth * (1 - s_depth) / w_intra


ANSWERS = {"04.1": dL_dC, "04.2": fate, "04.3": SHIFT_OUTCOMES, "04.4": cluster_probe,
           "04.5": FPS_INVARIANCE, "04.6": effective_shift}

WRITTEN = {
    "04.1": "dL/dC = −(F − s) where C > 0, and 0 where C < 0 (zero_clamp). A pair whose "
            "features agree more than the shift (F > s) is attracted (its C grows), one whose "
            "features agree less is repelled, and a pair already anti-correlated is ignored. "
            "Why zero_clamp: without it, repelled pairs are pushed all the way to C = −1, but "
            "in `dim` dimensions at most 2·dim directions can be pairwise non-positive, so with "
            "many classes most 'different' pairs can never reach −1 and would keep pulling the "
            "codes around; with the clamp, 'orthogonal is different enough'.",
    "04.3": SHIFT_OUTCOMES.__repr__() + " — the shift is the line between attraction and "
            "repulsion; it must sit between the typical F of same-class and different-class "
            "pairs of *this* backbone, which is why the shifts belong to the backbone.",
    "04.5": "scale invariant, offset and square not. In practice every stored map is min–max "
            "normalised per image, so FPS never sees the depth's scale or offset at all: only "
            "the *relative* spacing of depths inside one image shapes where the points go.",
    "04.6": "s' = s_intra − w_depth(1 − s_depth)/w_intra. The released depth term adds no "
            "information about depth: it only lowers the intra shift, i.e. strengthens the "
            "attraction inside each image, and its decay schedule slowly moves the effective "
            "shift back up. So any gain the paper reports over STEGO from this term must come "
            "from this change of shift (and from the schedule), not from depth.",
    "04.7": "intra (an image with itself): copies the image's own feature correlation into "
            "the codes — regions the backbone separates get separated codes. kNN (an image "
            "with a similar other image): the same across images, so one class gets one code "
            "direction in every image (chapter 03, exercise 03.4). negative (an image with a "
            "random other image): mostly different classes; with a shift above their typical "
            "F they repel, which keeps the codes from collapsing to one point — without "
            "repulsion the loss is smallest when every code is equal (toy 04.3 at shift −0.5).",
    "04.8": "fps_thing_share(depth, labels, thing_ids, grid, n) for n up to the grid side: the "
            "share falls towards the pixel share as S grows (with S² = all cells, FPS and "
            "random both cover everything). With the released transposed reading the features "
            "are read at the mirrored cells, so the points FPS chose on things mostly read "
            "other pixels: expect the released share to be close to the random one.",
}
