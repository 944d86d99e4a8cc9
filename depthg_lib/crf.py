"""Dense CRF refinement of per-pixel class scores (docs/method.md §9). STEGO's fork-based pool
can hang once torch started its threads; here a bounded *spawn* pool has a timeout per image,
and whatever it fails to return is computed in this process instead."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .errors import DepthGError


def crf_available() -> bool:
    """True when `pydensecrf` (PyPI `pydensecrf2`) can be imported."""
    try:  # optional dependency (the `crf` extra)
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def require_crf() -> None:
    """One clear error when the CRF is asked for but its package is missing."""
    if not crf_available():
        raise DepthGError("the dense CRF needs the package pydensecrf2, which is not installed "
                          "in this environment; install it with `pip install pydensecrf2  (or: "
                          "pip install -e '.[crf]')`, or run without --crf")


def dense_crf(image: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """The dense CRF's marginals Q, float32 (C, H, W), of an RGB uint8 image (H, W, 3) and its
    class scores (C, H, W) of the same size: log-probabilities or any logits (softmax first)."""
    import pydensecrf.densecrf as dcrf  # optional dependency (the `crf` extra)
    from pydensecrf.utils import unary_from_softmax  # the same optional package

    log_probs = np.asarray(log_probs, dtype=np.float32)
    n, h, w = log_probs.shape
    e = np.exp(log_probs - log_probs.max(axis=0, keepdims=True))  # softmax
    bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])  # §9: the released code feeds BGR
    crf = dcrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(unary_from_softmax(e / e.sum(axis=0, keepdims=True)))
    # the released parameters: a smoothness kernel, an appearance kernel, 10 mean-field steps
    crf.addPairwiseGaussian(sxy=1, compat=3)
    crf.addPairwiseBilateral(sxy=67, srgb=3, rgbim=bgr, compat=4)
    q = crf.inference(10)
    return np.asarray(q, dtype=np.float32).reshape(n, h, w)


class CRFRunner(contextlib.AbstractContextManager):
    """`dense_crf` over batches in a bounded process pool (`workers=0`: in this process). An
    image over `timeout` seconds or a broken pool ends the pool for good (with a warning) and
    every unfinished image of this and later batches is computed here: slower, but it ends."""

    def __init__(self, workers: int | None = None, timeout: float = 120.0):
        require_crf()
        if workers is None:  # `DEPTHG_CRF_WORKERS` if set, else up to 4 when there are > 2 cores
            cpus = os.cpu_count() or 1
            default = 0 if cpus <= 2 else min(4, cpus - 1)
            workers = max(0, int(os.environ.get("DEPTHG_CRF_WORKERS", default)))
        self.workers = int(workers)
        self.timeout = timeout
        self._pool: cf.ProcessPoolExecutor | None = None
        self.fell_back = False

    def __exit__(self, *_exc) -> None:
        self.close()

    def _get_pool(self) -> cf.ProcessPoolExecutor | None:
        if self.workers <= 0 or self.fell_back:
            return None
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def close(self) -> None:
        """Stop the pool; a worker stuck in an image is terminated, not waited for."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((pool._processes or {}).values())  # shutdown forgets them (Python < 3.14)
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    def __call__(self, images: Sequence[np.ndarray] | np.ndarray,
                 log_probs: Sequence[np.ndarray] | np.ndarray, argmax: bool = False
                 ) -> np.ndarray:
        """Marginals (B, C, H, W), or labels (B, H, W) with `argmax` (class counts may differ)."""
        results: list[np.ndarray | None] = [None] * len(images)
        pool = self._get_pool()
        if pool is not None:
            futures = [pool.submit(dense_crf, im, lp) for im, lp in zip(images, log_probs)]
            try:
                for i, fut in enumerate(futures):
                    results[i] = fut.result(timeout=self.timeout)
            except (cf.TimeoutError, BrokenProcessPool, OSError) as err:
                warnings.warn(f"dense CRF pool failed ({type(err).__name__}: {err}); "
                              "continuing in this process", RuntimeWarning, stacklevel=2)
                self.fell_back = True
                self.close()
        results = [dense_crf(im, lp) if q is None else q  # what the pool did not return
                   for q, im, lp in zip(results, images, log_probs)]
        return np.stack([q.argmax(0) for q in results] if argmax else results)
