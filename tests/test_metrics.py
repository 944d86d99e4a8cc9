"""Scores of a segmentation (docs/method.md §9) on cases small enough to count by hand.

The golden and property tests of the same functions are in tests/test_evaluate.py (through
`depthg_lib.evaluate`, which re-exports them); this file is what mutation testing runs for
`depthg_lib.metrics`, so each case pins one rule of the released metric.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import metrics as M

GOLDEN = Path(__file__).parent / "data" / "golden"


def test_histogram_counts_prediction_rows_against_label_columns():
    preds = np.array([[0, 1, 1, 1], [2, 0, 3, 0]])
    target = np.array([[0, 1, 0, 3], [2, 255, -1, 3]])  # 3 = n_classes, 255, −1: ignored
    hist = M.confusion_histogram(preds, target, 3)
    np.testing.assert_array_equal(hist, [[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert hist.dtype == np.int64


def test_extra_clusters_are_dropped_as_released_or_kept_on_request():
    preds = torch.tensor([0, 2, 2, 1, -1])  # a tensor, and a negative prediction (ignored)
    target = torch.tensor([0, 1, 0, 1, 0])
    dropped = M.confusion_histogram(preds, target, 2, extra_clusters=1)
    np.testing.assert_array_equal(dropped, [[1, 0], [0, 1], [0, 0]])
    kept = M.confusion_histogram(preds, target, 2, extra_clusters=1, drop_extra=False)
    np.testing.assert_array_equal(kept, [[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError, match="differ in size"):
        M.confusion_histogram(preds[:3], target, 2)


def test_hungarian_match_maximises_matched_pixels():
    rows, cols = M.scores(np.array([[1, 7, 0], [6, 2, 0], [0, 0, 3]]))["assignment"]
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    assert rows.dtype == np.int64 and cols.dtype == np.int64


def test_scores_of_a_square_histogram_by_hand():
    hist = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    res = M.scores(hist, hungarian=False)
    # tp 1, 1, 1; union = column + row − tp = 2, 2, 1
    np.testing.assert_allclose(res["iou"], [50.0, 50.0, 100.0])
    assert res["miou"] == pytest.approx(100 * 2 / 3)
    assert res["acc"] == pytest.approx(75.0)
    assert res["cluster_to_class"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(res["histogram"], hist)


def test_hungarian_scores_reorder_rows_to_their_classes():
    hist = np.array([[0, 5, 1], [4, 0, 0], [0, 1, 3]])  # cluster 0 is class 1, 1 is class 0
    res = M.scores(hist)
    assert res["cluster_to_class"].tolist() == [1, 0, 2]
    np.testing.assert_array_equal(res["histogram"], [[4, 0, 0], [0, 5, 1], [0, 1, 3]])
    assert res["histogram"].dtype == np.int64  # counts stay counts
    # tp 4, 5, 3; union 4 + 4 − 4, 6 + 6 − 5, 4 + 4 − 3
    np.testing.assert_allclose(res["iou"], [100.0, 500 / 7, 60.0])
    assert res["acc"] == pytest.approx(100 * 12 / 14)
    np.testing.assert_array_equal(res["assignment"][0], [0, 1, 2])
    np.testing.assert_array_equal(res["assignment"][1], [1, 0, 2])


def test_an_unmatched_cluster_is_one_extra_row_with_iou_zero():
    hist = np.array([[5, 0, 0], [0, 4, 0], [0, 0, 3], [1, 1, 0]])
    res = M.scores(hist)
    assert res["cluster_to_class"].tolist() == [0, 1, 2, -1]
    np.testing.assert_array_equal(res["histogram"], [[5, 0, 0, 0], [0, 4, 0, 0], [0, 0, 3, 0],
                                                     [1, 1, 0, 0]])
    assert res["histogram"].dtype == np.int64
    # class IoUs 5/6, 4/5, 3/3 and the unmatched row's 0/2, all four averaged
    np.testing.assert_allclose(res["iou"], [500 / 6, 80.0, 100.0])
    assert res["miou"] == pytest.approx(100 * (5 / 6 + 4 / 5 + 1 + 0) / 4)
    assert res["acc"] == pytest.approx(100 * 12 / 14)


def test_an_empty_unmatched_row_and_an_absent_class_are_left_out_of_the_mean():
    res = M.scores(np.array([[5, 0, 0], [0, 4, 0], [0, 0, 0], [0, 0, 0]]))
    assert np.isnan(res["iou"][2])  # class 2: no pixel, no prediction
    assert res["miou"] == pytest.approx(100.0)  # the empty extra row is undefined too
    assert res["acc"] == pytest.approx(100.0)
    empty = M.scores(np.zeros((2, 2), dtype=np.int64))
    assert np.isnan(empty["acc"]) and np.isnan(empty["miou"])


def test_fewer_clusters_than_classes_is_an_error():
    with pytest.raises(ValueError, match="at least as many rows"):
        M.scores(np.ones((2, 3), dtype=np.int64))


@pytest.mark.parametrize("extra", [0, 1])
def test_scores_match_golden(extra):
    g = np.load(GOLDEN / f"f_metrics_extra{extra}.npz")
    hist = M.confusion_histogram(g["preds"], g["target"], 5, extra_clusters=extra)
    np.testing.assert_array_equal(hist, g["stats"])
    res = M.scores(hist)
    np.testing.assert_array_equal(res["histogram"], g["histogram"])
    assert res["miou"] == pytest.approx(float(g["miou"]), abs=1e-5)
    assert res["acc"] == pytest.approx(float(g["acc"]), abs=1e-5)
