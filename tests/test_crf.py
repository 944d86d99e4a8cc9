"""Dense CRF (docs/method.md §9): refinement follows image edges; the pool falls back instead of
hanging."""

from __future__ import annotations

import numpy as np
import pytest

from depthg_lib import crf
from depthg_lib.errors import DepthGError

pytestmark = pytest.mark.skipif(not crf.crf_available(), reason="pydensecrf2 not installed")


def _two_region_case(seed=0, size=32):
    """An image split in a dark and a bright half; noisy scores that only roughly agree."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:, size // 2:] = 220
    truth = (np.arange(size)[None, :] >= size // 2).repeat(size, 0).astype(np.int64)
    logits = np.stack([1.0 - truth, truth.astype(float)]) * 1.0
    logits = logits + rng.normal(0, 1.2, logits.shape)
    log_probs = logits - np.log(np.exp(logits).sum(0, keepdims=True))
    return image, log_probs.astype(np.float32), truth


def test_dense_crf_returns_marginals_and_cleans_noise():
    image, log_probs, truth = _two_region_case()
    q = crf.dense_crf(image, log_probs)
    assert q.shape == log_probs.shape and q.dtype == np.float32
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-4)
    before = (log_probs.argmax(0) == truth).mean()
    after = (q.argmax(0) == truth).mean()
    assert before < 0.95 and after > before + 0.03


def test_runner_in_process_equals_direct_call():
    cases = [_two_region_case(seed) for seed in range(3)]
    images = np.stack([c[0] for c in cases])
    scores = np.stack([c[1] for c in cases])
    with crf.CRFRunner(workers=0) as runner:
        out = runner(images, scores)
    for i in range(3):
        np.testing.assert_allclose(out[i], crf.dense_crf(images[i], scores[i]), atol=1e-6)


def test_runner_falls_back_when_the_pool_breaks(monkeypatch):
    """A pool that times out is shut down and the images are computed in-process."""
    import concurrent.futures as cf

    class StuckFuture:
        def result(self, timeout=None):
            raise cf.TimeoutError()

    class StuckPool:
        def submit(self, *a, **k):
            return StuckFuture()

        def shutdown(self, **k):
            pass

    image, log_probs, _ = _two_region_case()
    runner = crf.CRFRunner(workers=2, timeout=0.01)
    monkeypatch.setattr(runner, "_get_pool", lambda: StuckPool())
    with pytest.warns(RuntimeWarning, match="continuing in this process"):
        out = runner([image], [log_probs])
    assert runner.fell_back
    np.testing.assert_allclose(out[0], crf.dense_crf(image, log_probs), atol=1e-6)


def test_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(crf, "crf_available", lambda: False)
    with pytest.raises(DepthGError, match="pip install pydensecrf2"):
        crf.require_crf()


def test_real_process_pool_matches_in_process():
    cases = [_two_region_case(seed, size=24) for seed in range(2)]
    images = [c[0] for c in cases]
    scores = [c[1] for c in cases]
    with crf.CRFRunner(workers=1, timeout=60) as runner:
        out = runner(images, scores)
        assert not runner.fell_back
    for i in range(2):
        np.testing.assert_allclose(out[i], crf.dense_crf(images[i], scores[i]), atol=1e-6)


def test_runner_argmax_accepts_different_class_counts():
    image, log_probs, _ = _two_region_case()
    three = np.concatenate([log_probs, np.full_like(log_probs[:1], -20.0)])
    labels = crf.CRFRunner(workers=0)([image, image], [log_probs, three], argmax=True)
    assert labels.shape == (2, 32, 32)
    np.testing.assert_array_equal(labels[0], crf.dense_crf(image, log_probs).argmax(0))
