"""The plain reference code (depthg_lib.reference) equals the golden values and the fast paths.

Fast paths are imported through their public names only (losses.depthg_loss,
kernels.depth_correlation, sampling.fps_coords, models.ClusterProbe).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthg_lib import reference as ref
from depthg_lib.kernels import depth_correlation
from depthg_lib.losses import LossSettings, depthg_loss
from depthg_lib.models import ClusterProbe
from depthg_lib.sampling import fps_coords

GOLDEN = Path(__file__).parent / "data" / "golden"
# the golden c_* files use the cocostuff27-vits8 shifts (docs/method.md §10)
GOLDEN_SHIFTS = {"intra": 0.07, "inter": 0.025, "neg": 0.761, "depth": 0.03}
FEW = settings(max_examples=20, deadline=None, derandomize=True)


def golden(name):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(GOLDEN / f"{name}.npz").items()}


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ one STEGO pair term

@pytest.mark.parametrize("pointwise,zero_clamp,key", [
    (True, True, "loss_pointwise_True"), (False, True, "loss_pointwise_False"),
    (True, False, "loss_noclamp")])
def test_pair_loss_matches_golden(pointwise, zero_clamp, key):
    g = golden("a_correlation_helper")
    loss, cd = ref.pair_loss(g["f1"], g["f2"], g["c1"], g["c2"], float(g["shift"]),
                             pointwise=pointwise, zero_clamp=zero_clamp)
    torch.testing.assert_close(loss, g[key], atol=1e-10, rtol=0)
    torch.testing.assert_close(cd, g[f"cd_pointwise_{pointwise}"], atol=1e-10, rtol=0)


def test_stabilize_caps_code_correlation_at_0_8():
    g = golden("a_correlation_helper")
    c = g["c1"]
    # with f = c, no centring and shift 0, F = C, so the loss is −clamp(C, 0, 0.8)·C
    loss, cd = ref.pair_loss(c, c, c, c, 0.0, pointwise=False, stabilize=True)
    assert (cd > 0.8).any()  # the diagonal: the cap is exercised
    torch.testing.assert_close(loss, -cd.clamp(0, 0.8) * cd, atol=1e-12, rtol=0)


def test_correlation_is_cosine_similarity_of_points():
    gen = _gen(0)
    a, b = torch.randn(2, 1, 5, 3, 4, generator=gen, dtype=torch.float64)
    corr = ref.correlation(a, b)
    assert corr.shape == (1, 3, 4, 3, 4)
    cos = torch.nn.functional.cosine_similarity(a[0, :, 2, 1], b[0, :, 0, 3], dim=0)
    torch.testing.assert_close(corr[0, 2, 1, 0, 3], cos)


# ------------------------------------------------------------------------ the depth term

@pytest.mark.parametrize("pair", ["self", "pair"])
def test_depth_term_released_matches_golden(pair):
    g = golden("b_depth_feature_correlation")
    c2, d2 = (g["c1"], g["d1"]) if pair == "self" else (g["c2"], g["d2"])
    loss, dd = ref.depth_pair_loss(g["c1"], c2, g["d1"], d2, float(g["shift"]))
    torch.testing.assert_close(loss, g[f"loss_{pair}"], atol=1e-10, rtol=0)
    torch.testing.assert_close(dd, g[f"dd_{pair}"], atol=1e-10, rtol=0)
    assert set(dd.unique().tolist()) <= {0.0, 1.0}  # the released quirk (golden README §1)


@FEW
@given(seed=st.integers(0, 10_000), n=st.integers(1, 3), s=st.integers(1, 6),
       size=st.integers(6, 20), fidelity=st.sampled_from(["released", "corrected"]))
def test_depth_correlation_equals_kernel(seed, n, s, size, fidelity):
    gen = _gen(seed)
    if fidelity == "released":  # whole maps of 8-bit values, zeros included
        d1, d2 = torch.randint(0, 256, (2, n, 1, size, size), generator=gen).double()
        slow = ref.depth_correlation_released(d1, d2, (s, s))
    else:  # normalised depth already read at the points
        d1, d2 = torch.rand(2, n, 1, s, s, generator=gen, dtype=torch.float64)
        slow = ref.depth_correlation_corrected(d1, d2)
    fast = depth_correlation(d1, d2, (s, s), fidelity)
    torch.testing.assert_close(slow, fast, atol=1e-12, rtol=0)


def test_depth_correlation_kernel_refuses_mismatched_depth():
    from depthg_lib.errors import DepthGError

    with pytest.raises(DepthGError, match="same number of points"):
        depth_correlation(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 2, 2), fidelity="corrected")
    with pytest.raises(DepthGError, match=r"\(N,1,H,W\)"):
        depth_correlation(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), (3, 3))
    one, two = torch.rand(1, 1, 3, 3), torch.rand(1, 2, 3, 3)  # either map alone is wrong
    for d1, d2 in ((two, one), (one, two), (one[0], one)):
        with pytest.raises(DepthGError, match=r"\(N,1,H,W\)"):
            depth_correlation(d1, d2, (3, 3))


def test_released_depth_correlation_of_depths_below_one():
    """x̂ = x / max(|x|, 1e-10) on one channel: a depth of 0.5 is still 1 after normalising,
    one of 5e-11 only 0.5 — the kernel as the reference (§6.1), not a larger ε."""
    d = torch.tensor([0.5, 5e-11, 0.0, 1e-3], dtype=torch.float64).view(1, 1, 2, 2)
    slow = ref.depth_correlation_released(d, d, (2, 2))
    torch.testing.assert_close(depth_correlation(d, d), slow, atol=1e-12, rtol=0)
    assert slow[0, 0, 0, 0, 0] == 1 and slow[0, 0, 1, 0, 1] == pytest.approx(0.25)


def test_corrected_depth_correlation_by_hand():
    d = torch.tensor([0.0, 0.25, 1.0, 0.5]).view(1, 1, 2, 2)
    flat = ref.depth_correlation_corrected(d, d).reshape(4, 4)
    expected = torch.tensor([[1.0, 0.75, 0.0, 0.5], [0.75, 1.0, 0.25, 0.75],
                             [0.0, 0.25, 1.0, 0.5], [0.5, 0.75, 0.5, 1.0]])
    torch.testing.assert_close(flat, expected)


def test_released_depth_correlation_is_constant_and_corrected_is_not():
    ramp = torch.linspace(1, 255, 24).repeat(24, 1)[None, None]
    released = ref.depth_correlation_released(ramp, ramp, (5, 5))
    assert torch.equal(released, torch.ones_like(released))  # the released quirk
    d = ref.grid_depth(ramp / 255, (5, 5))  # corrected units: d̂ in [0, 1] as stored
    corrected = ref.depth_correlation_corrected(d, d)
    assert corrected.max() == 1 and corrected.unique().numel() > 2
    # the ends of the ramp are 1/255 and 1 apart by about 0.8 after pooling: D small, not 0
    assert 0.1 < corrected.min() < 0.3


def test_defaults_are_the_released_settings():
    """Called without options, the reference computes the released objective: m = 0 (no
    force where C < 0), F centred per point, the released reads and FPS (docs/method.md §6)."""
    g = golden("a_correlation_helper")
    cd = torch.tensor([-0.5, 0.3])
    torch.testing.assert_close(ref.clamped_loss(cd, torch.ones(2), 0.1),
                               torch.tensor([0.0, -0.27]))
    args = (g["f1"], g["f2"], g["c1"], g["c2"], float(g["shift"]))
    torch.testing.assert_close(ref.pair_loss(*args)[0], g["loss_pointwise_True"], atol=1e-10,
                               rtol=0)
    maps = torch.arange(25.0).view(1, 1, 5, 5)
    coords = torch.tensor([[[[-1.0, 1.0], [0.0, -1.0]], [[1.0, 0.5], [0.5, 0.0]]]])
    assert torch.equal(ref.sample(maps, coords), ref.sample(maps, coords, "released"))
    assert not torch.equal(ref.sample(maps, coords), ref.sample(maps, coords, "corrected"))
    depth = golden("d_fps")["depth"][:1]
    assert torch.equal(ref.fps_coords(depth, (7, 7), 3),
                       ref.fps_coords(depth, (7, 7), 3, "released"))


# ------------------------------------------------------------------- the whole objective

def test_sample_reads_where_the_coordinates_point():
    """A map of its own column and row numbers on a 5×5 grid, read at hand-picked (x, y):
    −1, 0, 1 are the first, middle and last cell; `released` fills output (a, c) from the
    coordinates at (c, a). (The objective's means cannot see that swap — every pair term
    averages over all pairs of points — so it is checked here, on the points themselves.)"""
    cols = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    rows = torch.arange(5.0).view(1, 1, 5, 1).expand(1, 1, 5, 5)
    maps = torch.cat([cols, rows], 1)
    coords = torch.tensor([[[[-1.0, -1.0], [1.0, 0.0]], [[0.5, -0.5], [-0.25, 1.0]]]])
    corrected = ref.sample(maps, coords, "corrected")[0]
    torch.testing.assert_close(corrected, torch.tensor([[[0.0, 4.0], [3.0, 1.5]],
                                                        [[0.0, 2.0], [1.0, 4.0]]]))
    released = ref.sample(maps, coords, "released")[0]
    torch.testing.assert_close(released, torch.tensor([[[0.0, 3.0], [4.0, 1.5]],
                                                       [[0.0, 1.0], [2.0, 4.0]]]))


@pytest.mark.parametrize("name", ["c_full_loss_random", "c_full_loss_fps"])
def test_objective_matches_golden(name):
    g = golden(name)
    weights = dict(zip(("intra", "inter", "neg", "depth"), g["weights"].tolist()))
    out = ref.objective(g["feats"], g["feats_pos"], g["code"], g["code_pos"], g["depth"],
                        g["depth_pos"], g["coords1"], g["coords2"], g["neg_perms"],
                        weights=weights, shifts=GOLDEN_SHIFTS)
    torch.testing.assert_close(out["total"], g["total_weighted"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["pos_intra"], g["pos_intra_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["pos_inter"], g["pos_inter_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["neg_inter"], g["neg_inter_loss"].mean(), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["depth"], g["depth_feat_loss"], atol=1e-6, rtol=0)


def _negatives(b, k, gen, cyclic):
    """k maps of the batch that never pair an image with itself: batch shifts (the fast
    path's slicing branch) or STEGO-style permutations (its gather branch, repeats allowed)."""
    ar = torch.arange(b)
    if k == 0:
        return torch.zeros((0, b), dtype=torch.long)
    if cyclic:
        return torch.stack([(ar + 1 + int(torch.randint(0, b - 1, (1,), generator=gen))) % b
                            for _ in range(k)]).reshape(k, b)
    rows = [torch.randperm(b, generator=gen) for _ in range(k)]
    return torch.stack([torch.where(p == ar, (p + 1) % b, p) for p in rows]).reshape(k, b)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), b=st.integers(2, 5), s=st.integers(2, 5),
       k=st.integers(0, 3), cyclic=st.booleans(),
       fidelity=st.sampled_from(["released", "corrected"]), pointwise=st.booleans(),
       zero_clamp=st.booleans(), stabilize=st.booleans(), use_depth=st.booleans())
def test_objective_equals_depthg_loss_with_gradients(seed, b, s, k, cyclic, fidelity, pointwise,
                                                     zero_clamp, stabilize, use_depth):
    gen = _gen(seed)
    grid = 8
    feats, feats_pos = torch.randn(2, b, 150, grid, grid, generator=gen)  # 2 channel chunks
    codes0, codes_pos0 = torch.randn(2, b, 6, grid, grid, generator=gen)
    depth, depth_pos = (torch.rand(2, b, 1, 4 * grid, 4 * grid, generator=gen) * 255).round()
    if fidelity == "corrected":  # units of the fidelity: [0, 1]
        depth, depth_pos = depth / 255, depth_pos / 255
    coords = torch.rand(2, b, s, s, 2, generator=gen) * 2 - 1
    perms = _negatives(b, k, gen, cyclic)
    weights = {"intra": 0.5, "inter": 0.3, "neg": 0.7, "depth": 0.2}
    shifts = {"intra": 0.1, "inter": 0.2, "neg": 0.6, "depth": 0.03}
    flags = dict(fidelity=fidelity, pointwise=pointwise, zero_clamp=zero_clamp,
                 stabilize=stabilize, use_depth=use_depth)

    codes, codes_pos = codes0.clone().requires_grad_(), codes_pos0.clone().requires_grad_()
    settings = LossSettings(n_samples=s, weights=weights, shifts=shifts, neg_samples=k, **flags)
    fast = depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, settings,
                       coords=tuple(coords), neg_perms=perms)
    fast["total"].backward()
    r_codes, r_codes_pos = codes0.clone().requires_grad_(), codes_pos0.clone().requires_grad_()
    slow = ref.objective(feats, feats_pos, r_codes, r_codes_pos, depth, depth_pos, *coords,
                         perms, weights=weights, shifts=shifts, **flags)
    slow["total"].backward()
    for key in ("pos_intra", "pos_inter", "neg_inter", "depth", "total"):
        torch.testing.assert_close(fast[key], slow[key], atol=1e-6, rtol=1e-5, msg=key)
    torch.testing.assert_close(codes.grad, r_codes.grad, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(codes_pos.grad, r_codes_pos.grad, atol=1e-7, rtol=1e-4)


def test_codes_of_tiny_length_are_normalised_as_released():
    """x̂ = x / max(‖x‖, 1e-10): a code of length 1e-11 becomes one of length 0.1, not a unit
    vector — in the kernels as in the reference (docs/method.md §6)."""
    gen = _gen(7)
    b, s, grid = 3, 3, 6
    feats, feats_pos = torch.randn(2, b, 20, grid, grid, generator=gen)
    codes, codes_pos = torch.randn(2, b, 4, grid, grid, generator=gen) * 1e-11
    depth = (torch.rand(b, 1, 24, 24, generator=gen) * 255).round()
    coords = tuple(torch.rand(2, b, s, s, 2, generator=gen) * 2 - 1)
    perms = torch.tensor([[1, 2, 0]])
    weights = {"intra": 0.5, "inter": 0.3, "neg": 0.7, "depth": 0.2}
    shifts = {"intra": 0.1, "inter": 0.2, "neg": 0.6, "depth": 0.03}
    fast = depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth,
                       LossSettings(n_samples=s, weights=weights, shifts=shifts),
                       coords=coords, neg_perms=perms)
    slow = ref.objective(feats, feats_pos, codes, codes_pos, depth, depth, *coords, perms,
                         weights=weights, shifts=shifts)
    for key in ("pos_intra", "pos_inter", "neg_inter", "depth"):
        torch.testing.assert_close(fast[key], slow[key], atol=1e-6, rtol=1e-5, msg=key)
    assert slow["pos_intra"].abs() < 0.05  # |C| ≤ 0.01 here: unit vectors would give far more


# ----------------------------------------------------------- depth-guided farthest points

@pytest.mark.parametrize("key,grid,n", [("coords_n9", 28, 9), ("coords_n11", 28, 11),
                                        ("coords_pooled14_n7", 14, 7)])
def test_fps_matches_golden_bitwise(key, grid, n):
    g = golden("d_fps")
    coords = ref.fps_coords(g["depth"], (grid, grid), n, "released")
    assert torch.equal(coords, g[key] * 2 - 1)


def test_fps_points_and_selection_order_match_golden():
    g = golden("d_fps")
    points = ref.unproject(g["depth"][0, 0], ref.K_RELEASED)
    assert torch.equal(points, g["points_map0"])
    assert ref.farthest_points(points, 81) == g["fps_inds_map0_81"].tolist()


@FEW
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), grid=st.sampled_from([4, 6, 7, 12]),
       scale=st.sampled_from([1, 2, 4]), frac=st.floats(0.05, 1.0),
       kind=st.sampled_from(["smooth", "levels", "constant"]),
       fidelity=st.sampled_from(["released", "corrected"]))
def test_fps_equals_fps_coords(seed, b, grid, scale, frac, kind, fidelity):
    gen = _gen(seed)
    size = grid * scale
    if kind == "smooth":
        depth = torch.rand(b, 1, size, size, generator=gen) * 255
    elif kind == "levels":  # few distinct depths: many exact ties between distances
        depth = torch.randint(0, 3, (b, 1, size, size), generator=gen).float() * 100
    else:  # every point equal: FPS must still never pick a cell twice
        depth = torch.full((b, 1, size, size), 128.0)
    n = max(1, int(grid * frac))
    slow = ref.fps_coords(depth, (grid, grid), n, fidelity)
    fast = fps_coords(depth, (grid, grid), n, fidelity)
    assert torch.equal(slow, fast)
    if fidelity == "corrected":  # cell centres, never one twice
        assert torch.unique(slow.reshape(b, -1, 2), dim=1).shape[1] == n * n


@pytest.mark.parametrize("fidelity", ["released", "corrected"])
def test_fps_on_a_grid_one_cell_high(fidelity):
    """A 1×4 feature grid: every cell has the same row, whose centre is y = 0 in `corrected`
    (no division by the grid's height − 1 = 0)."""
    depth = torch.tensor([[[[10.0, 80.0, 30.0, 200.0]]]]).repeat_interleave(2, 3)  # (1,1,1,8)
    slow = ref.fps_coords(depth, (1, 4), 2, fidelity)
    assert torch.equal(slow, fps_coords(depth, (1, 4), 2, fidelity))
    if fidelity == "corrected":
        assert (slow[..., 1] == 0).all() and sorted(slow[..., 0].flatten().tolist()) == \
            pytest.approx([-1.0, -1 / 3, 1 / 3, 1.0])


def test_corrected_fps_on_a_grid_two_cells_wide():
    """On a 2×2 grid every cell is a corner: its centre is ±1 on both axes (align_corners)."""
    depth = torch.tensor([[10.0, 80.0], [30.0, 200.0]]).view(1, 1, 2, 2)
    coords = ref.fps_coords(depth, (2, 2), 2, "corrected")
    assert sorted(map(tuple, coords.reshape(-1, 2).tolist())) == [
        (-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]


# ---------------------------------------------------------------------- the cluster probe

def test_cluster_probe_matches_golden():
    g = golden("e_cluster_lookup")
    loss, probs = ref.cluster_probe(g["x"], g["clusters"])
    torch.testing.assert_close(loss, g["loss_hard"], atol=1e-6, rtol=0)
    torch.testing.assert_close(probs, g["probs_hard"], atol=1e-6, rtol=0)
    loss, probs = ref.cluster_probe(g["x"], g["clusters"], alpha=2)
    torch.testing.assert_close(loss, g["loss_alpha2"], atol=1e-6, rtol=0)
    torch.testing.assert_close(probs, g["probs_alpha2"], atol=1e-6, rtol=0)


@FEW
@given(seed=st.integers(0, 10_000), n_clusters=st.integers(2, 7), dim=st.integers(2, 9),
       alpha=st.sampled_from([None, 0.5, 2.0, 10.0]))
def test_cluster_probe_equals_module(seed, n_clusters, dim, alpha):
    gen = _gen(seed)
    codes = torch.randn(2, dim, 5, 4, generator=gen)
    probe = ClusterProbe(dim, n_clusters)
    with torch.no_grad():
        probe.clusters.copy_(torch.randn(n_clusters, dim, generator=gen))
    loss, probs = ref.cluster_probe(codes, probe.clusters.detach(), alpha)
    fast_loss, fast_probs = probe(codes, alpha)
    torch.testing.assert_close(loss, fast_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(probs, fast_probs, atol=1e-6, rtol=1e-6)


def test_cluster_probe_has_a_channel_for_every_centroid_even_unused():
    """p is one-hot over all n centroids, also when no pixel picks the last ones."""
    codes = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss, probs = ref.cluster_probe(codes, centroids)
    assert probs.shape == (1, 3, 3, 3) and torch.equal(probs[0, :, 0, 0], torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(loss, torch.tensor(-1.0))


def test_cluster_similarity_of_tiny_codes_is_still_cosine():
    """Codes and centroids of length ~1e-11 are normalised with ε = 1e-12, as
    `models.ClusterProbe` (F.normalize): their cosine similarity does not shrink."""
    gen = _gen(3)
    codes, centroids = torch.randn(1, 4, 2, 2, generator=gen), torch.randn(3, 4, generator=gen)
    torch.testing.assert_close(ref.cluster_similarity(codes * 1e-11, centroids * 1e-11),
                               ref.cluster_similarity(codes, centroids), atol=1e-5, rtol=1e-5)
