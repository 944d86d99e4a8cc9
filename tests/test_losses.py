"""Losses: golden c terms, fast objective == released structure, corrected depth term.

The single pair terms (golden a, b) are checked on `depthg_lib.reference` in
tests/test_reference.py; here the training entry point `losses.depthg_loss` is.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import kernels
from depthg_lib import reference as ref
from depthg_lib.errors import DepthGError
from depthg_lib.losses import (
    LossSettings,
    depthg_loss,
    depthg_loss_terms,
    negative_permutations,
)
from depthg_lib.reference import objective
from depthg_lib.sampling import fps_coords, grid_depth, random_coords, sample

GOLDEN = Path(__file__).parent / "data" / "golden"
# The golden c_* files were made with the cocostuff27-vits8 weights (stored in the file) and
# that profile's shifts (docs/method.md §10); only these shifts reproduce the stored loss means.
GOLDEN_SHIFTS = {"intra": 0.07, "inter": 0.025, "neg": 0.761, "depth": 0.03}


def golden(name):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(GOLDEN / f"{name}.npz").items()}


def run_loss(*maps, generator=None, coords=None, neg_perms=None, **settings):
    """`losses.depthg_loss` with its settings given as keywords (shorter cases)."""
    return depthg_loss(*maps, LossSettings(**settings), generator=generator, coords=coords,
                       neg_perms=neg_perms)


def run_terms(*maps, generator=None, coords=None, neg_perms=None, **settings):
    """`losses.depthg_loss_terms` with its settings given as keywords."""
    return depthg_loss_terms(*maps, LossSettings(**settings), generator=generator,
                             coords=coords, neg_perms=neg_perms)


# ----------------------------------------------------------------------------- golden c

def _golden_inputs(g):
    return [g[k] for k in ("feats", "feats_pos", "code", "code_pos", "depth", "depth_pos")]


@pytest.mark.parametrize("name", ["c_full_loss_random", "c_full_loss_fps"])
def test_full_loss_terms_match_golden(name):
    g = golden(name)
    out = run_terms(*_golden_inputs(g), shifts=GOLDEN_SHIFTS,
                            coords=(g["coords1"], g["coords2"]), neg_perms=g["neg_perms"])
    for key in ("pos_intra_cd", "pos_inter_cd", "neg_inter_cd", "depth_feat_cd",
                "neg_inter_loss"):
        assert out[key].shape == g[key].shape, key
        torch.testing.assert_close(out[key], g[key], atol=1e-5, rtol=0, msg=key)
    for key in ("pos_intra_loss", "pos_inter_loss", "depth_feat_loss"):
        torch.testing.assert_close(out[key].mean(), g[key], atol=1e-6, rtol=0, msg=key)


@pytest.fixture(params=["sparse", "grid_sample"])
def reader(request, monkeypatch):
    """Both ways of reading the sample points: sparse products (CPU) and grid_sample (CUDA)."""
    if request.param == "grid_sample":
        monkeypatch.setattr(kernels, "SPARSE_READS", set())
    return request.param


@pytest.mark.parametrize("name", ["c_full_loss_random", "c_full_loss_fps"])
def test_depthg_loss_total_matches_golden(name, reader):
    g = golden(name)
    weights = dict(zip(("intra", "inter", "neg", "depth"), g["weights"].tolist()))
    out = run_loss(*_golden_inputs(g), n_samples=g["coords1"].shape[1], weights=weights,
                      shifts=GOLDEN_SHIFTS, coords=(g["coords1"], g["coords2"]),
                      neg_perms=g["neg_perms"])
    torch.testing.assert_close(out["total"], g["total_weighted"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["pos_intra"], g["pos_intra_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["neg_inter"], g["neg_inter_loss"].mean(), atol=1e-6, rtol=0)
    assert out["total"].dim() == 0 and torch.equal(out["coords1"], g["coords1"])


def test_fps_sampling_reproduces_golden_coords():
    g = golden("c_full_loss_fps")
    out = run_terms(*_golden_inputs(g), n_samples=5, sampling="fps",
                            shifts=GOLDEN_SHIFTS, neg_perms=g["neg_perms"])
    assert torch.equal(out["coords1"], g["coords1"])
    assert torch.equal(out["coords2"], g["coords2"])
    torch.testing.assert_close(out["neg_inter_loss"], g["neg_inter_loss"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------ fast path == released

@pytest.mark.parametrize("rule,flags", [
    ("shift", {}), ("stego", {}),
    ("shift", {"pointwise": False, "zero_clamp": False}), ("stego", {"stabilize": True})])
def test_fast_objective_equals_released_structure_with_gradients(rule, flags, reader):
    gen = torch.Generator().manual_seed(3)
    b, s = 6, 4
    feats, feats_pos = torch.randn(2, b, 300, 9, 9, generator=gen)  # 3 channel chunks
    codes0 = torch.randn(b, 5, 9, 9, generator=gen)
    codes_pos0 = torch.randn(b, 5, 9, 9, generator=gen)
    depth = (torch.rand(b, 1, 36, 36, generator=gen) * 255).round()
    coords = (random_coords(b, s, gen), random_coords(b, s, gen))
    # shifts take the slicing path, the others the gather path; STEGO's rule repeats images
    perms = negative_permutations(b, 4, gen, rule=rule)
    weights = {"intra": 0.5, "inter": 0.3, "neg": 0.7, "depth": 0.2}
    shifts = {"intra": 0.1, "inter": 0.2, "neg": 0.6, "depth": 0.03}

    codes, codes_pos = codes0.clone().requires_grad_(), codes_pos0.clone().requires_grad_()
    ours = run_loss(feats, feats_pos, codes, codes_pos, depth, depth, n_samples=s,
                       weights=weights, shifts=shifts, coords=coords, neg_perms=perms, **flags)
    ours["total"].backward()
    ref_c, ref_cp = codes0.clone().requires_grad_(), codes_pos0.clone().requires_grad_()
    # the plain reference: whole maps permuted per negative, sampled afterwards (as released)
    ref = objective(feats, feats_pos, ref_c, ref_cp, depth, depth, *coords, perms,
                    shifts=shifts, weights=weights, **flags)["total"]
    ref.backward()
    torch.testing.assert_close(ours["total"], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(codes.grad, ref_c.grad, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(codes_pos.grad, ref_cp.grad, atol=1e-7, rtol=1e-4)


def test_negative_permutations_never_pair_an_image_with_itself():
    gen = torch.Generator().manual_seed(0)
    rel = negative_permutations(8, 50, gen, rule="stego")
    ar = torch.arange(8)
    assert not (rel == ar).any() and ((rel >= 0) & (rel < 8)).all()
    assert any(len(set(p.tolist())) < 8 for p in rel)  # STEGO's rule repeats images
    assert any(len(set(p.tolist())) == 8 for p in rel)  # a permutation when it has no fixed point
    shifts = negative_permutations(8, 5, gen)  # default: cyclic shifts, all different
    offsets = [int(s) for s in (shifts[:, 0])]
    assert len(set(offsets)) == 5 and 0 not in offsets
    assert all(torch.equal(row, (ar + o) % 8) for row, o in zip(shifts, offsets))
    assert kernels.cyclic_shifts(shifts) == offsets
    assert kernels.cyclic_shifts(torch.tensor([[1, 0, 3, 2]])) is None  # a swap, no shift
    assert kernels.cyclic_shifts(torch.tensor([[0]])) == [0]  # one image: the shift by 0
    with pytest.raises(DepthGError, match="at least 2"):
        negative_permutations(1, 3)


def test_stego_rule_moves_a_fixed_point_to_the_next_image():
    """STEGO's rule: a fixed point i of the permutation serves image i + 1 instead, so an image
    r that serves twice does so once at its predecessor r − 1 (docs/method.md §6)."""
    perms = negative_permutations(8, 50, torch.Generator().manual_seed(0), rule="stego")
    twice = 0
    for p in perms.tolist():
        for r in {r for r in p if p.count(r) == 2}:
            assert p[(r - 1) % 8] == r
            twice += 1
    assert twice > 10


@pytest.mark.parametrize("k", [3, 8])  # fewer draws than other images, and more
def test_negative_permutations_come_from_the_generator_only(k):
    def draw(seed):
        return negative_permutations(8, k, torch.Generator().manual_seed(seed))
    torch.manual_seed(1)
    first = draw(0)
    torch.manual_seed(2)  # the global stream must not matter
    assert torch.equal(first, draw(0))
    assert any(not torch.equal(first, draw(seed)) for seed in range(1, 4))


def test_negative_permutations_at_the_smallest_sizes():
    assert negative_permutations(2, 1).tolist() == [[1, 0]]  # two images: each the other's
    assert negative_permutations(2, 2, rule="stego").tolist() == [[1, 0], [1, 0]]
    assert negative_permutations(2, 3).tolist() == [[1, 0]] * 3  # k ≥ B: shifts by 1 only
    with pytest.raises(DepthGError, match="at least 2"):
        negative_permutations(1, 1)
    for rule in ("shift", "stego"):  # no negatives: any batch will do, and nothing is drawn
        gen = torch.Generator().manual_seed(0)
        none = negative_permutations(1, 0, gen, rule=rule)
        assert none.shape == (0, 1) and none.dtype == torch.long  # indices, even when empty
        assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())
    for seed in range(10):  # more draws than other images: shifts repeat, never 0
        perms = negative_permutations(3, 6, torch.Generator().manual_seed(seed))
        assert not (perms == torch.arange(3)).any()
    gen = torch.Generator().manual_seed(0)
    every = negative_permutations(4, 3, gen)  # as many draws as other images: each once
    assert sorted(int(s) for s in every[:, 0]) == [1, 2, 3]
    assert negative_permutations(4, 4, gen).shape == (4, 4)  # one more: still k rows


# ------------------------------------------------------------------ options and corrected

def _random_batch(b=4, grid=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats, feats_pos = torch.randn(2, b, 16, grid, grid, generator=gen)
    codes = torch.randn(b, 6, grid, grid, generator=gen, requires_grad=True)
    codes_pos = torch.randn(b, 6, grid, grid, generator=gen, requires_grad=True)
    depth, depth_pos = (torch.rand(2, b, 1, grid * 4, grid * 4, generator=gen) * 255).round()
    return feats, feats_pos, codes, codes_pos, depth, depth_pos


W = {"intra": 0.58, "inter": 0.36, "neg": 0.7, "depth": 0.19}


def test_depthg_loss_keys_and_seeded_determinism():
    batch = _random_batch()
    a = run_loss(*batch, n_samples=5, weights=W, shifts=GOLDEN_SHIFTS,
                    generator=torch.Generator().manual_seed(7))
    b = run_loss(*batch, n_samples=5, weights=W, shifts=GOLDEN_SHIFTS,
                    generator=torch.Generator().manual_seed(7))
    assert set(a) == {"pos_intra", "pos_inter", "neg_inter", "depth", "total", "coords1",
                      "coords2"}
    assert all(a[k].dim() == 0 for k in ("pos_intra", "pos_inter", "neg_inter", "depth"))
    assert torch.equal(a["total"], b["total"]) and torch.equal(a["coords1"], b["coords1"])
    assert not a["coords1"].requires_grad
    expected = sum(W[k] * a[n] for k, n in (("intra", "pos_intra"), ("inter", "pos_inter"),
                                            ("neg", "neg_inter"), ("depth", "depth")))
    torch.testing.assert_close(a["total"], expected)


def test_use_depth_off_needs_no_depth_and_drops_the_term():
    feats, feats_pos, codes, codes_pos, _, _ = _random_batch()
    out = run_loss(feats, feats_pos, codes, codes_pos, None, None, n_samples=4,
                      weights={k: W[k] for k in ("intra", "inter", "neg")},
                      shifts=GOLDEN_SHIFTS, use_depth=False,
                      generator=torch.Generator().manual_seed(0))
    assert out["depth"] == 0
    torch.testing.assert_close(out["total"], 0.58 * out["pos_intra"] + 0.36 * out["pos_inter"]
                               + 0.7 * out["neg_inter"])


def test_feature_dropout_changes_only_the_feature_side():
    batch = _random_batch()
    kw = dict(n_samples=5, weights=W, shifts=GOLDEN_SHIFTS)
    plain = run_terms(*batch, shifts=GOLDEN_SHIFTS, n_samples=5,
                              generator=torch.Generator().manual_seed(1))
    dropped = run_terms(*batch, shifts=GOLDEN_SHIFTS, n_samples=5, feature_dropout=0.5,
                                generator=torch.Generator().manual_seed(1))
    again = run_loss(*batch, feature_dropout=0.5, generator=torch.Generator().manual_seed(1),
                        **kw)
    assert torch.equal(plain["coords1"], dropped["coords1"])
    torch.testing.assert_close(plain["pos_intra_cd"], dropped["pos_intra_cd"])  # codes: same
    assert not torch.allclose(plain["pos_inter_loss"], dropped["pos_inter_loss"])  # F differs
    torch.testing.assert_close(again["pos_inter"], dropped["pos_inter_loss"].mean())


def test_dropout_masks_the_feature_maps_of_each_side():
    """Dropout on the read points equals Dropout2d on the maps: the anchors' maps with the
    first mask drawn from the generator, the positives' with the second (kernels docstring)."""
    feats, feats_pos, codes, codes_pos, depth, _ = _random_batch()
    coords = (random_coords(4, 3), random_coords(4, 3))
    kw = dict(shifts=GOLDEN_SHIFTS, n_samples=3, coords=coords,
              neg_perms=torch.tensor([[2, 0, 3, 1]]))
    dropped = run_terms(feats, feats_pos, codes, codes_pos, depth, depth, feature_dropout=0.5,
                        generator=torch.Generator().manual_seed(1), **kw)
    gen = torch.Generator().manual_seed(1)
    m1, m2 = (kernels.dropout_mask(f, 0.5, gen)[..., None] for f in (feats, feats_pos))
    masked = run_terms(feats * m1, feats_pos * m2, codes, codes_pos, depth, depth, **kw)
    for key in ("pos_intra_loss", "pos_inter_loss", "neg_inter_loss"):
        torch.testing.assert_close(dropped[key], masked[key], msg=key)


def test_dropout_mask_zeroes_whole_channels_and_scales_the_rest():
    """A Dropout2d mask (B, C, 1): each channel 0 or 1/(1 − p), so the mean is kept; from the
    given generator or, without one, the global stream."""
    x = torch.ones(6, 50, 7)
    for gen in (torch.Generator().manual_seed(0), None):
        mask = kernels.dropout_mask(x, 0.2, gen)
        assert mask.shape == (6, 50, 1)
        assert mask.unique().tolist() == pytest.approx([0.0, 1.25])
        assert 0.8 < float(mask.mean()) < 1.2


def test_no_dropout_draws_nothing():
    """feature_dropout = 0 leaves the generator as it was (points and negatives given)."""
    feats, feats_pos, codes, codes_pos, depth, _ = _random_batch()
    gen = torch.Generator().manual_seed(0)
    run_loss(feats, feats_pos, codes, codes_pos, depth, depth, n_samples=3, weights=W,
             shifts=GOLDEN_SHIFTS, coords=(random_coords(4, 3), random_coords(4, 3)),
             neg_perms=torch.tensor([[1, 2, 3, 0]]), generator=gen)
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_feature_correlation_ignores_the_features_length():
    """F is a cosine similarity: features scaled to length ~0.004 give the same loss."""
    feats, feats_pos, codes, codes_pos, depth, _ = _random_batch()
    kw = dict(n_samples=4, weights=W, shifts=GOLDEN_SHIFTS,
              coords=(random_coords(4, 4), random_coords(4, 4)),
              neg_perms=torch.tensor([[1, 2, 3, 0], [2, 0, 1, 1]]))
    small = run_loss(feats * 1e-3, feats_pos * 1e-3, codes, codes_pos, depth, depth, **kw)
    plain = run_loss(feats, feats_pos, codes, codes_pos, depth, depth, **kw)
    for key in ("pos_intra", "pos_inter", "neg_inter"):
        torch.testing.assert_close(small[key], plain[key], msg=key)


def test_stabilized_terms_average_to_the_loss():
    """With stabilize, the un-reduced terms cap C at 0.8 as the loss does: their means are
    the loss's terms (C = 1 on the intra diagonal, so the cap matters)."""
    batch = _random_batch()
    kw = dict(n_samples=4, shifts=GOLDEN_SHIFTS, stabilize=True,
              coords=(random_coords(4, 4), random_coords(4, 4)),
              neg_perms=torch.tensor([[1, 2, 3, 0]]))
    terms = run_terms(*batch, **kw)
    loss = run_loss(*batch, weights=W, **kw)
    assert (terms["pos_intra_cd"] > 0.8).any()
    for key in ("pos_intra", "pos_inter", "neg_inter"):
        torch.testing.assert_close(terms[f"{key}_loss"].mean(), loss[key], msg=key)


def test_corrected_terms_pair_the_points_in_the_reference_layout():
    """Un-reduced corrected terms: entry [b, h, w, i, j] pairs anchor point (h, w) with
    positive point (i, j), read without the released axis swap, as `reference.pair_loss`
    on `reference.sample` (a loss's mean cannot see the order; the terms can)."""
    feats, feats_pos, codes, codes_pos, depth, _ = _random_batch()
    c1, c2 = random_coords(4, 3), random_coords(4, 3)
    out = run_terms(feats, feats_pos, codes, codes_pos, depth, depth, fidelity="corrected",
                    shifts=GOLDEN_SHIFTS, coords=(c1, c2),
                    neg_perms=torch.zeros((0, 4), dtype=torch.long))
    f1, f2 = (ref.sample(f, c, "corrected") for f, c in ((feats, c1), (feats_pos, c2)))
    k1, k2 = (ref.sample(k, c, "corrected") for k, c in ((codes, c1), (codes_pos, c2)))
    loss, cd = ref.pair_loss(f1, f2, k1, k2, GOLDEN_SHIFTS["inter"])
    torch.testing.assert_close(out["pos_inter_cd"], cd.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(out["pos_inter_loss"], loss.detach(), atol=1e-6, rtol=0)


def test_points_outside_the_square_read_the_border(reader):
    """Both readers are grid_sample with border padding also outside [−1, 1]²: each point
    clamps to the nearest edge (points kept to where a wrong read stays in memory)."""
    maps = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    grid = torch.tensor([[[1.8, 0.0], [0.0, 1.8], [1.8, 1.8], [0.3, -0.2]],
                         [[-1.8, 0.5], [0.5, -1.8], [-1.8, -1.8], [-0.6, 0.9]]])
    expected = torch.nn.functional.grid_sample(maps, grid[:, None], mode="bilinear",
                                               padding_mode="border", align_corners=True)
    rows = kernels.PointReader(grid, (4, 4))(maps)
    torch.testing.assert_close(rows, expected[:, :, 0].transpose(1, 2).reshape(-1, 3))


def test_reading_maps_of_another_size_names_both_sizes():
    reader = kernels.PointReader(torch.zeros(1, 2, 2), (4, 4))
    with pytest.raises(DepthGError, match=r"maps of size \(5, 6\) read with a grid made for "
                                          r"\(4, 4\)"):
        reader(torch.zeros(1, 3, 5, 6))


def test_gradients_reach_codes_not_features():
    feats, feats_pos, codes, codes_pos, depth, depth_pos = _random_batch()
    feats.requires_grad_()
    out = run_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=4,
                      sampling="fps", weights=W, shifts=GOLDEN_SHIFTS,
                      generator=torch.Generator().manual_seed(0))
    out["total"].backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0
    assert codes_pos.grad is not None and feats.grad is None


def test_corrected_depth_term_reads_depth_at_the_sample_points(reader):
    """A hand-computed toy: two 4×4 depth maps of 2×2 constant blocks, a 2×2 feature grid,
    the 2×2 sample points on the four cell centres, so each point reads one block's depth
    and D_pq = 1 − |d̂_p − d̂_q| can be written down (docs/method.md §6.1)."""
    blocks = torch.tensor([[[0.0, 0.2], [0.6, 1.0]], [[0.5, 0.5], [0.1, 0.3]]])  # (B, 2, 2)
    depth = blocks.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, None]  # (B,1,4,4)
    gen = torch.Generator().manual_seed(0)
    feats, feats_pos = torch.randn(2, 2, 3, 2, 2, generator=gen)
    codes, codes_pos = torch.randn(2, 2, 4, 2, 2, generator=gen)
    # corrected coordinates are (x = column, y = row); point (i, j) of the grid reads cell
    # (row j, column i) here, in the order (0,0), (1,0), (0,1), (1,1) of the cells
    centres = torch.tensor([[[-1.0, -1.0], [-1.0, 1.0]], [[1.0, -1.0], [1.0, 1.0]]])
    coords = centres.expand(2, 2, 2, 2)
    out = run_terms(feats, feats_pos, codes, codes_pos, depth, depth, fidelity="corrected",
                    shifts=GOLDEN_SHIFTS, coords=(coords, coords),
                    neg_perms=torch.zeros((0, 2), dtype=torch.long))
    # image 0 reads 0.0, 0.6, 0.2, 1.0; image 1 reads 0.5, 0.1, 0.5, 0.3
    expected = torch.tensor([
        [[1.0, 0.4, 0.8, 0.0], [0.4, 1.0, 0.6, 0.6], [0.8, 0.6, 1.0, 0.2], [0.0, 0.6, 0.2, 1.0]],
        [[1.0, 0.6, 1.0, 0.8], [0.6, 1.0, 0.6, 0.8], [1.0, 0.6, 1.0, 0.8], [0.8, 0.8, 0.8, 1.0]]])
    torch.testing.assert_close(out["depth_feat_cd"].reshape(2, 4, 4), expected)


def test_corrected_depth_is_not_stretched_again_per_crop(reader):
    """A crop whose depth spans only 0.40..0.60 of its image's range: its nearest and farthest
    points are 0.2 apart in d̂, so D ≥ 0.8 — they attract (D > s_depth), never repel as they
    would if each crop were stretched to [0, 1] again (docs/method.md §6.1)."""
    feats, feats_pos, codes, codes_pos, _, _ = _random_batch(seed=4)
    ramp = torch.linspace(0.4, 0.6, 32).repeat(32, 1)  # depth grows left to right
    depth = ramp.expand(4, 1, 32, 32).clone()
    out = run_terms(feats, feats_pos, codes, codes_pos, depth, depth, n_samples=5,
                            sampling="fps", fidelity="corrected", shifts=GOLDEN_SHIFTS,
                            generator=torch.Generator().manual_seed(0))
    d = out["depth_feat_cd"]
    assert d.min() >= 0.8 - 1e-6 and d.min() < 0.9  # far apart within the crop, still close
    dn = sample(grid_depth(depth, (8, 8)), out["coords1"], "corrected")
    assert 0.4 <= dn.min() and dn.max() <= 0.6  # the stored values, not a per-crop [0, 1]


@pytest.mark.parametrize("fidelity,rule", [("released", "stego"), ("corrected", "shift")])
def test_negatives_follow_the_fidelitys_rule(fidelity, rule):
    """released draws STEGO's permutations (an image may serve twice), corrected distinct
    batch shifts; both after the random sample points, from the same generator."""
    b, s, k = 8, 3, 20
    feats, feats_pos, codes, codes_pos, depth, depth_pos = _random_batch(b=b)
    out = run_terms(feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=s,
                            fidelity=fidelity, neg_samples=k, shifts=GOLDEN_SHIFTS,
                            generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    random_coords(b, s, gen), random_coords(b, s, gen)  # the draws before the negatives
    expected = negative_permutations(b, k, gen, rule=rule)
    assert torch.equal(out["neg_perms"], expected)
    repeats = any(len(set(p.tolist())) < b for p in out["neg_perms"])
    assert repeats == (rule == "stego")


def test_bad_arguments_are_depthg_errors():
    batch = _random_batch()
    kw = dict(n_samples=4, weights=W, shifts=GOLDEN_SHIFTS)
    with pytest.raises(DepthGError, match="feature grid"):
        run_loss(*batch, sampling="fps", **{**kw, "n_samples": 9})  # 81 > 64 cells
    with pytest.raises(DepthGError, match="batch of at least 2"):
        run_loss(*(t[:1] for t in batch), **kw)


@pytest.mark.parametrize("fidelity", ["released", "corrected"])
def test_fps_points_are_the_fidelitys_fps_of_each_batch(fidelity):
    """The anchors' points are FPS on their depth, the positives' on theirs — also when the
    two depth batches differ in size (then FPS runs once per batch)."""
    feats, feats_pos, codes, codes_pos, depth, depth_pos = _random_batch(seed=5)
    for pos in (depth_pos, depth_pos[..., :16, :16]):
        out = run_terms(feats, feats_pos, codes, codes_pos, depth, pos, n_samples=3,
                        sampling="fps", fidelity=fidelity, shifts=GOLDEN_SHIFTS,
                        generator=torch.Generator().manual_seed(0))
        assert torch.equal(out["coords1"], fps_coords(depth, (8, 8), 3, fidelity))
        assert torch.equal(out["coords2"], fps_coords(pos, (8, 8), 3, fidelity))


def test_fps_points_of_positives_on_another_feature_grid():
    """Positives whose features are 6×6 (the anchors' 8×8) get FPS on their own grid."""
    feats, _, codes, _, depth, depth_pos = _random_batch(seed=5)
    feats_pos, codes_pos = _random_batch(grid=6, seed=6)[1:4:2]
    out = run_terms(feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=3,
                    sampling="fps", shifts=GOLDEN_SHIFTS, neg_samples=0,
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(out["coords1"], fps_coords(depth, (8, 8), 3))
    assert torch.equal(out["coords2"], fps_coords(depth_pos, (6, 6), 3))
