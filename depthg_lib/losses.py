"""The DepthG objective for a batch: `depthg_loss`, the one entry point training calls.

``F`` feature, ``C`` code and ``D`` depth correlation between two S×S grids of sample points
(docs/method.md §6). `depthg_lib.reference` writes the objective plainly, `depthg_lib.kernels`
fast; this module draws the sample points and the negatives and hands them to the kernels.
`depthg_loss_terms` returns every un-reduced tensor (golden ``c_*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from .errors import DepthGError
from .kernels import (
    PointReader,
    clamped_correlation_means,
    clamped_products,
    depth_correlation,
    grouped_correlations,
)
from .sampling import fps_coords, grid_depth, random_coords, sampling_grid

# Bump when what the objective computes changes, so stored results made with the old one are
# redone (2: corrected D reads the stored per-image depth, released negatives follow STEGO).
OBJECTIVE_VERSION = 2


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """What the objective computes: the profile's loss fields (docs/method.md §6, §6.1, §7),
    validated there. ``shifts``/``weights`` per term (intra, inter, neg, depth); ``n_samples``
    is S; ``feature_dropout`` the released Dropout2d on the loss's own copy of the features."""

    shifts: Mapping[str, float]
    weights: Mapping[str, float] | None = None
    n_samples: int | None = None
    sampling: str = "random"
    fidelity: str = "released"
    neg_samples: int = 5
    pointwise: bool = True
    zero_clamp: bool = True
    stabilize: bool = False
    use_depth: bool = True
    feature_dropout: float = 0.0

    @property
    def clamp(self) -> tuple[float, float | None]:
        """The bounds of clamp(C): m = 0 with zero_clamp (else −9999), 0.8 with stabilize."""
        return (0.0 if self.zero_clamp else -9999.0), (0.8 if self.stabilize else None)


def negative_permutations(batch: int, k: int, generator: torch.Generator | None = None,
                          rule: str = "shift") -> torch.Tensor:
    """k maps of the batch onto itself that never pair an image with itself, shape (k, B), on
    the generator's device.

    ``shift``: ``b ↦ (b + s) mod B``, s ≠ 0 distinct per draw while B allows (the batch is in
    random order, so a negative is a random other image; the kernels read shifts without
    copying). ``stego``: the released rule, a random permutation whose fixed points i move
    to i+1 mod B (an image may serve twice).
    """
    if k > 0 and batch < 2:
        raise DepthGError(f"negative samples need a batch of at least 2 images, got {batch}; "
                          "use a larger batch or neg_samples=0")
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    ar = torch.arange(batch, device=gen_dev)
    if k == 0:
        perms = torch.zeros((0, batch), dtype=torch.long, device=gen_dev)
    elif rule == "stego":
        perms = torch.stack([torch.randperm(batch, generator=generator, device=gen_dev)
                             for _ in range(k)])
        perms = torch.where(perms == ar, perms + 1, perms) % batch
    else:
        if k < batch:
            shifts = torch.randperm(batch - 1, generator=generator, device=gen_dev)[:k] + 1
        else:
            shifts = torch.randint(1, batch, (k,), generator=generator, device=gen_dev)
        perms = (ar + shifts[:, None]) % batch
    return perms


def _sample_points(maps, settings: LossSettings, generator, coords):
    """coords1, coords2 (B,S,S,2): given, or drawn (random, or FPS on the depth, §7)."""
    feats, feats_pos, _, _, depth, depth_pos = maps
    b, dev, n, fidelity = feats.shape[0], feats.device, settings.n_samples, settings.fidelity
    if coords is not None:
        return coords[0].to(dev), coords[1].to(dev)
    if settings.sampling == "random":
        c1 = random_coords(b, n, generator=generator)
        c2 = random_coords(b, n, generator=generator)
        return c1.to(dev), c2.to(dev)
    grid, grid_pos = feats.shape[-2:], feats_pos.shape[-2:]
    if depth.shape == depth_pos.shape and grid == grid_pos:
        # one greedy loop for both batches: the steps cost the same for 2B clouds
        both = fps_coords(torch.cat([depth, depth_pos]), grid, n, fidelity)
        return both[:b], both[b:]
    return fps_coords(depth, grid, n, fidelity), fps_coords(depth_pos, grid_pos, n, fidelity)


def _depth_correlation(depth, grid_hw, grid1, s: int, fidelity: str) -> torch.Tensor:
    """D of every image's points with themselves, (1,B,P,P), no gradient (§6.1)."""
    b = depth.shape[0]
    with torch.no_grad():
        if fidelity == "released":  # depth resized to S×S, not read at the points (golden §1)
            d = depth.float()
            dd = depth_correlation(d, d, (s, s))
        else:  # d̂ as stored (per source image), read where the features are read
            dn = grid_depth(depth, grid_hw).float()
            dn = PointReader(grid1, dn.shape[-2:])(dn).view(b, 1, s, s)
            dd = depth_correlation(dn, dn, fidelity="corrected")
    return dd.reshape(1, b, s * s, s * s)


def _objective(maps, settings: LossSettings, generator, coords, neg_perms):
    """Every pair term of the batch, un-reduced: coords1, coords2, the negatives and a dict
    with ``cd`` = C and ``target`` = F − shift, (G,B,P,P) for the groups [intra, inter,
    neg_1..k], and with the depth term ``depth_corr`` = D and ``depth_target`` = D − shift.
    Random draws, in this order: coords1, coords2 (random sampling), the negatives (STEGO's
    rule in `released`, batch shifts in `corrected`), the dropout masks."""
    feats, feats_pos, codes, codes_pos, depth, _ = maps
    b, dev = feats.shape[0], feats.device
    codes, codes_pos = codes.float(), codes_pos.float()  # no-op for float32 (autograd-safe)
    coords1, coords2 = _sample_points(maps, settings, generator, coords)
    if neg_perms is None:
        rule = "stego" if settings.fidelity == "released" else "shift"
        neg_perms = negative_permutations(b, settings.neg_samples, generator, rule)
    perms = torch.as_tensor(neg_perms, dtype=torch.long).to(dev)
    s = coords1.shape[1]
    grid1 = sampling_grid(coords1, settings.fidelity).reshape(b, s * s, 2)
    grid2 = sampling_grid(coords2, settings.fidelity).reshape(b, s * s, 2)
    cd, fd = grouped_correlations(feats, feats_pos, codes, codes_pos, grid1, grid2, perms,
                                  settings.shifts, settings.pointwise,
                                  settings.feature_dropout, generator)
    out = {"cd": cd, "target": fd}
    if settings.use_depth:
        dd = _depth_correlation(depth, feats.shape[-2:], grid1, s, settings.fidelity)
        out["depth_corr"] = dd
        out["depth_target"] = dd - settings.shifts["depth"]
    return coords1, coords2, perms, out


def depthg_loss_terms(feats, feats_pos, codes, codes_pos, depth, depth_pos,
                      settings: LossSettings, *, generator=None, coords=None,
                      neg_perms=None) -> dict[str, torch.Tensor]:
    """Every un-reduced term, named and shaped as the released forward: ``pos_intra_*``,
    ``pos_inter_*`` (B,S,S,S,S), ``neg_inter_*`` (k·B,S,S,S,S) negative-major,
    ``depth_feat_*`` (``_loss`` and ``_cd``), plus ``coords1``, ``coords2``, ``neg_perms``."""
    maps = (feats, feats_pos, codes, codes_pos, depth, depth_pos)
    coords1, coords2, perms, terms = _objective(maps, settings, generator, coords, neg_perms)
    s = coords1.shape[1]

    def unfold(t):  # (G,B,P,P) → (G·B,S,S,S,S), group-major as the released torch.cat
        return t.reshape(-1, s, s, s, s)

    cd, (lo, hi) = terms["cd"], settings.clamp
    loss = clamped_products(cd, terms["target"], lo, hi)
    out = {"pos_intra_loss": unfold(loss[:1]), "pos_intra_cd": unfold(cd[:1]),
           "pos_inter_loss": unfold(loss[1:2]), "pos_inter_cd": unfold(cd[1:2]),
           "neg_inter_loss": unfold(loss[2:]), "neg_inter_cd": unfold(cd[2:])}
    if settings.use_depth:
        out["depth_feat_loss"] = unfold(clamped_products(cd[:1], terms["depth_target"], lo, None))
        out["depth_feat_cd"] = unfold(terms["depth_corr"])
    out.update(coords1=coords1.detach(), coords2=coords2.detach(), neg_perms=perms)
    return out


def depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, settings: LossSettings,
                *, generator=None, coords=None, neg_perms=None) -> dict[str, torch.Tensor]:
    """The DepthG objective for one batch (docs/method.md §6, §6.1, §7): training's entry point.

    feats/feats_pos (B,D,h,w) features of the images and their positives, codes (B,K,h,w),
    depth/depth_pos (B,1,H,W) (released: 0..255). ``coords`` = (coords1, coords2) and
    ``neg_perms`` (k,B) replace the draws (golden tests). Returns scalar ``pos_intra``,
    ``pos_inter``, ``neg_inter``, ``depth`` (0 without ``use_depth``), their weighted sum
    ``total``, and the detached ``coords1``, ``coords2``.
    """
    maps = (feats, feats_pos, codes, codes_pos, depth, depth_pos)
    coords1, coords2, _, terms = _objective(maps, settings, generator, coords, neg_perms)
    g = terms["cd"].shape[0]  # groups: intra, inter, k negatives (+ depth, appended)
    means = clamped_correlation_means(terms["cd"], terms["target"], terms.get("depth_target"),
                                      *settings.clamp)
    zero = means.new_zeros(())
    out = {"pos_intra": means[0], "pos_inter": means[1],
           "neg_inter": means[2:g].mean() if g > 2 else zero,
           "depth": means[g] if settings.use_depth else zero}
    w = settings.weights
    total = (w["intra"] * out["pos_intra"] + w["inter"] * out["pos_inter"]
             + w["neg"] * out["neg_inter"])
    if settings.use_depth:
        total = total + w["depth"] * out["depth"]
    out["total"] = total
    out["coords1"], out["coords2"] = coords1.detach(), coords2.detach()
    return out



__all__ = ["LossSettings", "depthg_loss", "depthg_loss_terms", "negative_permutations"]
