"""Losses: golden a/b/c terms, fast objective == released structure, corrected depth term."""

from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import kernels
from depthg_lib.errors import DepthGError
from depthg_lib.losses import (
    correlation_loss,
    depth_correlation,
    depth_correlation_loss,
    depthg_loss,
    depthg_loss_terms,
    grid_depth,
    negative_permutations,
)
from depthg_lib.reference import objective
from depthg_lib.sampling import random_coords, sample

GOLDEN = Path(__file__).parent / "data" / "golden"
# The golden c_* files were made with the cocostuff27-vits8 weights (stored in the file) and
# that profile's shifts (docs/method.md §10); only these shifts reproduce the stored loss means.
GOLDEN_SHIFTS = {"intra": 0.07, "inter": 0.025, "neg": 0.761, "depth": 0.03}


def golden(name):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(GOLDEN / f"{name}.npz").items()}


# ----------------------------------------------------------------------------- golden a, b

@pytest.mark.parametrize("pointwise", [True, False])
def test_correlation_loss_matches_golden(pointwise):
    g = golden("a_correlation_helper")
    loss, cd = correlation_loss(g["f1"], g["f2"], g["c1"], g["c2"], float(g["shift"]),
                                pointwise=pointwise)
    assert loss.shape == (2, 6, 6, 6, 6)
    torch.testing.assert_close(loss, g[f"loss_pointwise_{pointwise}"], atol=1e-10, rtol=0)
    torch.testing.assert_close(cd, g[f"cd_pointwise_{pointwise}"], atol=1e-10, rtol=0)


def test_correlation_loss_without_zero_clamp_matches_golden():
    g = golden("a_correlation_helper")
    loss, _ = correlation_loss(g["f1"], g["f2"], g["c1"], g["c2"], float(g["shift"]),
                               zero_clamp=False)
    torch.testing.assert_close(loss, g["loss_noclamp"], atol=1e-10, rtol=0)


def test_stabilize_caps_code_correlation_at_0_8():
    g = golden("a_correlation_helper")
    c = g["c1"]
    # with f = c, no centring and shift 0, F = C, so the loss is −clamp(C, 0, 0.8)·C
    loss, cd = correlation_loss(c, c, c, c, 0.0, pointwise=False, stabilize=True)
    assert (cd > 0.8).any()  # the diagonal: the cap is exercised
    torch.testing.assert_close(loss, -cd.clamp(0, 0.8) * cd, atol=1e-12, rtol=0)


@pytest.mark.parametrize("pair", ["self", "pair"])
def test_depth_correlation_loss_released_matches_golden(pair):
    g = golden("b_depth_feature_correlation")
    c2, d2 = (g["c1"], g["d1"]) if pair == "self" else (g["c2"], g["d2"])
    loss, dd = depth_correlation_loss(g["c1"], c2, g["d1"], d2, float(g["shift"]))
    torch.testing.assert_close(loss, g[f"loss_{pair}"], atol=1e-10, rtol=0)
    torch.testing.assert_close(dd, g[f"dd_{pair}"], atol=1e-10, rtol=0)
    assert set(dd.unique().tolist()) <= {0.0, 1.0}  # the released quirk (golden README §1)


def test_depth_correlation_corrected_is_one_minus_depth_difference():
    d = torch.tensor([0.0, 0.25, 1.0, 0.5]).view(1, 1, 2, 2)
    dd = depth_correlation(d, d, fidelity="corrected")
    assert dd.shape == (1, 2, 2, 2, 2)
    flat = dd.reshape(4, 4)
    assert torch.allclose(flat.diagonal(), torch.ones(4))
    assert flat[0, 2] == 0.0 and flat[1, 3] == 0.75
    c = torch.randn(1, 5, 2, 2)
    loss, d_out = depth_correlation_loss(c, c, d, d, 0.3, fidelity="corrected")
    assert torch.equal(d_out, dd)
    with pytest.raises(DepthGError):
        depth_correlation_loss(c, c, torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 0.3,
                               fidelity="corrected")


# ----------------------------------------------------------------------------- golden c

def _golden_inputs(g):
    return [g[k] for k in ("feats", "feats_pos", "code", "code_pos", "depth", "depth_pos")]


@pytest.mark.parametrize("name", ["c_full_loss_random", "c_full_loss_fps"])
def test_full_loss_terms_match_golden(name):
    g = golden(name)
    out = depthg_loss_terms(*_golden_inputs(g), shifts=GOLDEN_SHIFTS,
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
    out = depthg_loss(*_golden_inputs(g), n_samples=g["coords1"].shape[1], weights=weights,
                      shifts=GOLDEN_SHIFTS, coords=(g["coords1"], g["coords2"]),
                      neg_perms=g["neg_perms"])
    torch.testing.assert_close(out["total"], g["total_weighted"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["pos_intra"], g["pos_intra_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(out["neg_inter"], g["neg_inter_loss"].mean(), atol=1e-6, rtol=0)
    assert out["total"].dim() == 0 and torch.equal(out["coords1"], g["coords1"])


def test_fps_sampling_reproduces_golden_coords():
    g = golden("c_full_loss_fps")
    out = depthg_loss_terms(*_golden_inputs(g), n_samples=5, sampling="fps",
                            shifts=GOLDEN_SHIFTS, neg_perms=g["neg_perms"])
    assert torch.equal(out["coords1"], g["coords1"])
    assert torch.equal(out["coords2"], g["coords2"])
    torch.testing.assert_close(out["neg_inter_loss"], g["neg_inter_loss"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------ fast path == released

@pytest.mark.parametrize("rule,flags", [
    ("shift", {}), ("derangement", {}), ("stego", {}),
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
    ours = depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth, n_samples=s,
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
    cor = negative_permutations(8, 50, gen, rule="derangement")
    ar = torch.arange(8)
    assert not (rel == ar).any() and not (cor == ar).any()
    assert all(sorted(p.tolist()) == list(range(8)) for p in cor)
    assert any(len(set(p.tolist())) < 8 for p in rel)  # STEGO's rule repeats images
    shifts = negative_permutations(8, 5, gen)  # default: cyclic shifts, all different
    ar = torch.arange(8)
    offsets = [int(s) for s in (shifts[:, 0])]
    assert len(set(offsets)) == 5 and 0 not in offsets
    assert all(torch.equal(row, (ar + o) % 8) for row, o in zip(shifts, offsets))
    assert kernels.cyclic_shifts(shifts) == offsets
    assert kernels.cyclic_shifts(torch.tensor([[1, 0, 3, 2]])) is None  # a swap, no shift
    with pytest.raises(DepthGError, match="at least 2"):
        negative_permutations(1, 3)
    with pytest.raises(DepthGError, match="rule"):
        negative_permutations(4, 1, rule="random")


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
    a = depthg_loss(*batch, n_samples=5, weights=W, shifts=GOLDEN_SHIFTS,
                    generator=torch.Generator().manual_seed(7))
    b = depthg_loss(*batch, n_samples=5, weights=W, shifts=GOLDEN_SHIFTS,
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
    out = depthg_loss(feats, feats_pos, codes, codes_pos, None, None, n_samples=4,
                      weights={k: W[k] for k in ("intra", "inter", "neg")},
                      shifts=GOLDEN_SHIFTS, use_depth=False,
                      generator=torch.Generator().manual_seed(0))
    assert out["depth"] == 0
    torch.testing.assert_close(out["total"], 0.58 * out["pos_intra"] + 0.36 * out["pos_inter"]
                               + 0.7 * out["neg_inter"])


def test_feature_dropout_changes_only_the_feature_side():
    batch = _random_batch()
    kw = dict(n_samples=5, weights=W, shifts=GOLDEN_SHIFTS)
    plain = depthg_loss_terms(*batch, shifts=GOLDEN_SHIFTS, n_samples=5,
                              generator=torch.Generator().manual_seed(1))
    dropped = depthg_loss_terms(*batch, shifts=GOLDEN_SHIFTS, n_samples=5, feature_dropout=0.5,
                                generator=torch.Generator().manual_seed(1))
    again = depthg_loss(*batch, feature_dropout=0.5, generator=torch.Generator().manual_seed(1),
                        **kw)
    assert torch.equal(plain["coords1"], dropped["coords1"])
    torch.testing.assert_close(plain["pos_intra_cd"], dropped["pos_intra_cd"])  # codes: same
    assert not torch.allclose(plain["pos_inter_loss"], dropped["pos_inter_loss"])  # F differs
    torch.testing.assert_close(again["pos_inter"], dropped["pos_inter_loss"].mean())


def test_gradients_reach_codes_not_features():
    feats, feats_pos, codes, codes_pos, depth, depth_pos = _random_batch()
    feats.requires_grad_()
    out = depthg_loss(feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=4,
                      sampling="fps", weights=W, shifts=GOLDEN_SHIFTS,
                      generator=torch.Generator().manual_seed(0))
    out["total"].backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0
    assert codes_pos.grad is not None and feats.grad is None


def test_corrected_depth_term_reads_depth_at_the_sample_points(reader):
    batch = list(_random_batch(seed=2))
    batch[4], batch[5] = batch[4] / 255, batch[5] / 255  # corrected units: [0, 1]
    out = depthg_loss_terms(*batch, n_samples=5, sampling="fps", fidelity="corrected",
                            shifts=GOLDEN_SHIFTS, generator=torch.Generator().manual_seed(0))
    dn = sample(grid_depth(batch[4], (8, 8)), out["coords1"], "corrected")
    expected = depth_correlation(dn, dn, fidelity="corrected")
    torch.testing.assert_close(out["depth_feat_cd"], expected)
    assert out["depth_feat_cd"].min() >= 0 and out["depth_feat_cd"].max() <= 1
    assert out["depth_feat_cd"].unique().numel() > 2  # not the released constant


def test_corrected_depth_is_not_stretched_again_per_crop(reader):
    """A crop whose depth spans only 0.40..0.60 of its image's range: its nearest and farthest
    points are 0.2 apart in d̂, so D ≥ 0.8 — they attract (D > s_depth), never repel as they
    would if each crop were stretched to [0, 1] again (docs/method.md §6.1)."""
    feats, feats_pos, codes, codes_pos, _, _ = _random_batch(seed=4)
    ramp = torch.linspace(0.4, 0.6, 32).repeat(32, 1)  # depth grows left to right
    depth = ramp.expand(4, 1, 32, 32).clone()
    out = depthg_loss_terms(feats, feats_pos, codes, codes_pos, depth, depth, n_samples=5,
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
    out = depthg_loss_terms(feats, feats_pos, codes, codes_pos, depth, depth_pos, n_samples=s,
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
    with pytest.raises(DepthGError, match="weights"):
        depthg_loss(*batch, n_samples=4, weights={"intra": 1.0}, shifts=GOLDEN_SHIFTS)
    with pytest.raises(DepthGError, match="codes_pos"):
        depthg_loss(*batch[:3], batch[3][:2], *batch[4:], **kw)
    with pytest.raises(DepthGError, match="share the grid"):
        depthg_loss(batch[0], batch[1], batch[2][..., :4, :4], batch[3], *batch[4:], **kw)
    with pytest.raises(DepthGError, match="neg_perms"):
        depthg_loss(*batch, neg_perms=torch.tensor([[0, 2, 3, 1]]), **kw)  # 0 → itself
    with pytest.raises(DepthGError, match="sampling"):
        depthg_loss(*batch, sampling="grid", **kw)
    with pytest.raises(DepthGError, match="feature grid"):
        depthg_loss(*batch, sampling="fps", **{**kw, "n_samples": 9})  # 81 > 64 cells
    with pytest.raises(DepthGError, match="depth"):
        depthg_loss(*batch[:4], None, None, **kw)
