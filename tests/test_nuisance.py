"""The study's nuisance knob: deterministic per source image, the documented sizes, off at 0."""

import numpy as np
import pytest
import torch

from depthg_lib.errors import DepthGError
from depthg_lib.nuisance import Nuisance, crop_sources, image_sources


def _feats(n=10, d=32, h=6, w=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d, h, w))).float()


def test_strength_zero_is_the_features_themselves():
    f = _feats()
    out = Nuisance(0.0, scale=3.0, dim=32).add(f, crop_sources(len(f)))
    assert torch.equal(out, f) and out is not f


def test_same_source_same_nuisance_in_any_call_other_sources_differ():
    f = _feats()
    nz = Nuisance(1.5, scale=2.0, dim=32, seed=3)
    sources = crop_sources(len(f))  # crops 0-4 share source 0, crops 5-9 source 1
    a = nz.add(f, sources) - f
    b = Nuisance(1.5, scale=2.0, dim=32, seed=3).add(f.flip(0), sources[::-1]) - f.flip(0)
    assert torch.allclose(a, b.flip(0), atol=1e-5)  # a fresh instance, another order: same
    for k in range(1, 5):
        assert torch.allclose(a[k], a[0], atol=1e-5)  # the five crops of one source image
    assert not torch.allclose(a[5], a[0], atol=1e-3)
    # the whole-image sources of another split are other sources
    c = nz.add(f[:2], image_sources(2, "report13")) - f[:2]
    assert not torch.allclose(c[0], a[0], atol=1e-3)


def test_sizes_are_as_documented():
    f = torch.zeros(4, 64, 8, 8)
    s, m = 2.0, 3.0
    offset = Nuisance(s, scale=m, dim=64, kinds=("offset",)).add(f, image_sources(4, "x"))
    assert torch.allclose(offset.norm(dim=1), torch.full((4, 8, 8), s * m), rtol=1e-4)
    pattern = Nuisance(s, scale=m, dim=64, kinds=("pattern",)).add(f, image_sources(4, "x"))
    assert torch.equal(pattern[0], pattern[3])  # one pattern for every image
    assert float(pattern[0].pow(2).sum(0).mean().sqrt()) == pytest.approx(s * m, rel=1e-4)
    nz = Nuisance(s, scale=m, dim=64, kinds=("outliers",), n_outliers=3)
    out = nz.add(f, image_sources(4, "x")).norm(dim=1)
    assert ((out > 0).sum(dim=(1, 2)) == 3).all()
    assert torch.allclose(out[out > 0], torch.tensor(nz.outlier_gain * s * m), rtol=1e-4)
    # the three kinds live in orthogonal directions
    q = nz.basis()
    assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-5)


def test_bad_settings_are_one_clear_error():
    with pytest.raises(DepthGError, match="strength"):
        Nuisance(-1.0, scale=1.0, dim=32)
    with pytest.raises(DepthGError, match="unknown nuisance kinds"):
        Nuisance(1.0, scale=1.0, dim=32, kinds=("offset", "blur"))
    with pytest.raises(DepthGError, match="source names"):
        Nuisance(1.0, scale=1.0, dim=32).add(_feats(3), ["a"])
