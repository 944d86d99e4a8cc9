"""The DepthG objective for a batch: one entry point, `depthg_loss`, for training.

Notation (docs/method.md §6): ``F`` feature correlation, ``C`` code correlation, ``D`` depth
correlation, all between two S×S grids of sample points. The objective is written twice:
plainly, one function per equation, in `depthg_lib.reference` (read that first), and fast in
`depthg_lib.kernels`; tests/test_reference.py checks that the two agree in values and
gradients. This module checks the arguments, draws the sample points and the negatives, and
hands them to the kernels:

- `LossSettings` — what the objective computes (the profile's loss fields, one object);
- `depthg_loss` — the reduced terms and their weighted total for one batch;
- `depthg_loss_terms` — the same inputs, every un-reduced tensor (golden ``c_*``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from .config import check_fidelity
from .errors import DepthGError
from .kernels import (
    PointReader,
    clamped_correlation_means,
    clamped_products,
    depth_correlation,
    grouped_correlations,
)
from .sampling import fps_coords, grid_depth, random_coords, sampling_grid

TERMS = ("intra", "inter", "neg", "depth")
OBJECTIVE_VERSION = 2
"""Bump when what the objective computes changes, so stored results made with the old one are
redone rather than mixed with new ones (2: corrected D reads the stored per-image depth,
released negatives follow STEGO's rule)."""


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """What the objective computes (docs/method.md §6, §6.1, §7; the profile's fields).

    ``shifts`` and ``weights``: s and w per term (intra, inter, neg, depth; the weights are
    needed only by `depthg_loss`, which sums the terms). ``n_samples``:
    S, the side of the sample grid (not needed when the caller passes ``coords``).
    ``feature_dropout``: the released Dropout2d on the loss's own copy of the features.
    """

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


NEG_RULES = ("shift", "derangement", "stego")


def negative_permutations(batch: int, k: int, generator: torch.Generator | None = None,
                          rule: str = "shift", device=None) -> torch.Tensor:
    """k maps of the batch onto itself that never pair an image with itself, shape (k, B).

    ``shift`` (default): ``b ↦ (b + s) mod B`` with a random shift s ≠ 0, distinct for each
    of the k draws. The batch is in random order, so each image's negative is a uniformly
    random other image, and the k negatives of an image are k different images; a shift
    also lets `depthg_loss` read the negatives without copying them. ``derangement``: a
    uniformly random permutation without fixed points. ``stego``: the released rule (a random
    permutation whose fixed points i move to i+1 mod B, so an image may serve twice).
    `depthg_loss` draws ``stego`` in `released` fidelity and ``shift`` in `corrected`; it takes
    any of them through ``neg_perms``, which replays a released draw exactly.
    """
    if rule not in NEG_RULES:
        raise DepthGError(f"rule must be one of {NEG_RULES}, got {rule!r}")
    if k > 0 and batch < 2:
        raise DepthGError(f"negative samples need a batch of at least 2 images, got {batch}; "
                          "use a larger batch or neg_samples=0")
    gen_dev = generator.device if generator is not None else torch.device("cpu")
    ar = torch.arange(batch, device=gen_dev)
    if k == 0:
        perms = torch.zeros((0, batch), dtype=torch.long, device=gen_dev)
    elif rule == "shift":
        if k <= batch - 1:
            shifts = torch.randperm(batch - 1, generator=generator, device=gen_dev)[:k] + 1
        else:
            shifts = torch.randint(1, batch, (k,), generator=generator, device=gen_dev)
        perms = (ar[None] + shifts[:, None]) % batch
    else:
        rows = []
        for _ in range(k):
            perm = torch.randperm(batch, generator=generator, device=gen_dev)
            if rule == "stego":
                perm = torch.where(perm == ar, perm + 1, perm) % batch
            else:
                for _try in range(100):
                    if not bool((perm == ar).any()):
                        break
                    perm = torch.randperm(batch, generator=generator, device=gen_dev)
                else:  # practically unreachable; a cyclic shift is a derangement
                    perm = (ar + 1) % batch
            rows.append(perm)
        perms = torch.stack(rows)
    return perms.to(device) if device is not None else perms


def _check_batch(maps, need_depth: bool) -> None:
    feats, feats_pos, codes, codes_pos, depth, depth_pos = maps
    b = feats.shape[0]
    for name, t in (("feats", feats), ("feats_pos", feats_pos), ("codes", codes),
                    ("codes_pos", codes_pos)):
        if t.dim() != 4 or t.shape[0] != b:
            raise DepthGError(f"{name} must be (B,C,h,w) with B={b}, got {tuple(t.shape)}")
    if feats.shape[-2:] != codes.shape[-2:] or feats_pos.shape[-2:] != codes_pos.shape[-2:]:
        raise DepthGError(f"features and codes must share the grid: feats {tuple(feats.shape)}, "
                          f"codes {tuple(codes.shape)}, feats_pos {tuple(feats_pos.shape)}, "
                          f"codes_pos {tuple(codes_pos.shape)}")
    if need_depth:
        for name, t in (("depth", depth), ("depth_pos", depth_pos)):
            if t is None or t.dim() != 4 or t.shape[0] != b or t.shape[1] != 1:
                found = None if t is None else tuple(t.shape)
                raise DepthGError(f"{name} must be (B,1,H,W) with B={b}, got {found}")


def _check_settings(settings: LossSettings, coords, weighted: bool) -> None:
    check_fidelity(settings.fidelity)
    need = TERMS if settings.use_depth else TERMS[:3]
    named = (("weights", settings.weights), ("shifts", settings.shifts))
    for name, values in named if weighted else named[1:]:
        missing = [t for t in need if t not in (values or {})]
        if missing:
            raise DepthGError(f"{name} needs the keys {list(need)}, missing {missing}")
    n = settings.n_samples
    if coords is None and (n is None or n < 1):
        raise DepthGError(f"n_samples must be a positive integer, got {n!r}")


def _sample_points(maps, settings: LossSettings, generator, coords):
    """coords1, coords2 (B,S,S,2): given, or drawn (random or FPS on the depth, §7)."""
    feats, feats_pos, _, _, depth, depth_pos = maps
    b, dev, n = feats.shape[0], feats.device, settings.n_samples
    if coords is not None:
        c1, c2 = coords
        if c1.dim() != 4 or c1.shape[0] != b or c1.shape[-1] != 2 or c1.shape != c2.shape:
            raise DepthGError(f"coords must be two (B,S,S,2) tensors with B={b}, got "
                              f"{tuple(c1.shape)} and {tuple(c2.shape)}")
        return c1.to(dev), c2.to(dev)
    if settings.sampling == "random":
        c1 = random_coords(b, n, generator=generator)
        c2 = random_coords(b, n, generator=generator)
        return c1.to(dev), c2.to(dev)
    if settings.sampling == "fps":
        grid, grid_pos = feats.shape[-2:], feats_pos.shape[-2:]
        if depth.shape == depth_pos.shape and tuple(grid) == tuple(grid_pos):
            # one greedy loop for both batches: the steps cost the same for 2B clouds
            both = fps_coords(torch.cat([depth, depth_pos]), grid, n, settings.fidelity)
            return both[:b], both[b:]
        return (fps_coords(depth, grid, n, settings.fidelity),
                fps_coords(depth_pos, grid_pos, n, settings.fidelity))
    raise DepthGError(f"sampling must be 'random' or 'fps', got {settings.sampling!r}")


def _negatives(settings: LossSettings, b: int, generator, neg_perms, dev) -> torch.Tensor:
    """(k, B) maps of the batch onto itself: given (checked), or drawn by the fidelity's rule
    (released: STEGO's permutations; corrected: distinct batch shifts; §6)."""
    if neg_perms is None:
        rule = "stego" if settings.fidelity == "released" else "shift"
        return negative_permutations(b, settings.neg_samples, generator, rule=rule, device=dev)
    perms = torch.as_tensor(neg_perms, dtype=torch.long).to(dev)
    ar = torch.arange(b, device=dev)
    if (perms.dim() != 2 or perms.shape[1] != b or bool((perms < 0).any())
            or bool((perms >= b).any()) or bool((perms == ar).any())):
        raise DepthGError(f"neg_perms must be (k, {b}) maps into 0..{b - 1} that never pair "
                          f"an image with itself, got {perms.tolist()}")
    return perms


def _depth_correlation(depth, grid_hw, grid1, s: int, fidelity: str) -> torch.Tensor:
    """D of every image's points with themselves, (1,B,P,P), no gradient (§6.1)."""
    b = depth.shape[0]
    with torch.no_grad():
        if fidelity == "released":
            # depth resized to S×S, not read at the sample points (golden README §1)
            d = depth.float()
            dd = depth_correlation(d, d, (s, s))
        else:  # d̂ as stored (per source image), read where the features are read
            dn = grid_depth(depth, grid_hw).float()
            dn = PointReader(grid1, dn.shape[-2:])(dn).view(b, 1, s, s)
            dd = depth_correlation(dn, dn, fidelity="corrected")
    return dd.reshape(1, b, s * s, s * s)


def _objective(maps, settings: LossSettings, generator, coords, neg_perms, weighted=True):
    """Shared core: every pair term of the batch, un-reduced, in one layout.

    Returns coords1, coords2, perms and a dict with ``cd`` = C and ``target`` = F − shift
    (after pointwise centring), both (G,B,P,P) for the groups G = [intra, inter, neg_1..k]
    (P = S² points); with the depth term also ``depth_target`` = D − shift_depth (1,B,P,P)
    and ``depth_corr`` = D. Random draws, in this order: coords1, coords2 (random sampling),
    the negatives, the dropout masks.
    """
    _check_settings(settings, coords, weighted)
    need_depth = settings.use_depth or (settings.sampling == "fps" and coords is None)
    _check_batch(maps, need_depth)
    feats, feats_pos, codes, codes_pos, depth, _ = maps
    b = feats.shape[0]
    codes, codes_pos = codes.float(), codes_pos.float()  # no-op for float32 (autograd-safe)
    coords1, coords2 = _sample_points(maps, settings, generator, coords)
    perms = _negatives(settings, b, generator, neg_perms, feats.device)
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
    """Every un-reduced term of the objective, named and shaped as the released forward.

    ``pos_intra_loss``/``pos_intra_cd``, ``pos_inter_loss``/``pos_inter_cd`` (B,S,S,S,S),
    ``neg_inter_loss``/``neg_inter_cd`` (k·B,S,S,S,S) negative-major, ``depth_feat_loss`` and
    ``depth_feat_cd`` (the depth correlation D, as released names it), plus ``coords1``,
    ``coords2``, ``neg_perms``. The weights are not used.
    """
    maps = (feats, feats_pos, codes, codes_pos, depth, depth_pos)
    coords1, coords2, perms, terms = _objective(maps, settings, generator, coords, neg_perms,
                                                weighted=False)
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

    feats/feats_pos (B,D,h,w) backbone features of the images and their kNN positives, codes
    (B,K,h,w) the head's output, depth/depth_pos (B,1,H,W) (released: 0..255 as loaded).
    Random draws, in this order from ``generator``: coords1, coords2 (random sampling), the
    negatives (`negative_permutations`: STEGO's rule in `released`, batch shifts in
    `corrected`), the dropout masks. ``coords`` = (coords1, coords2) and ``neg_perms`` (k,B)
    replace the draws (golden tests). Returns scalar ``pos_intra``, ``pos_inter``,
    ``neg_inter``, ``depth`` (0 when ``use_depth`` is off), ``total`` (weighted sum) and the
    detached ``coords1``, ``coords2``.
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


__all__ = ["LossSettings", "depth_correlation", "depthg_loss", "depthg_loss_terms",
           "negative_permutations"]
