"""Every reference solution passes its exercise's self-check; typical wrong answers do not.

The reference solutions live in solutions/NN_<chapter>.py (outside the notebooks); each holds
ANSWERS (what `exercises.check` accepts) and WRITTEN (worked answers in words).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import exercises
from depthg_lib.errors import DepthGError
from depthg_lib.exercises import core

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
CHAPTERS = ("00", "01", "02", "03", "04", "05", "06", "07")


def _load_solutions() -> dict[str, dict]:
    out = {}
    for path in sorted(SOLUTIONS.glob("[0-9][0-9]_*.py")):
        ns = runpy.run_path(str(path))
        out[path.name[:2]] = {"answers": ns.get("ANSWERS", {}), "written": ns.get("WRITTEN", {}),
                              "file": path.name}
    return out


SOLVED = _load_solutions()
ANSWERS = {k: v for s in SOLVED.values() for k, v in s["answers"].items()}
WRITTEN = {k: v for s in SOLVED.values() for k, v in s["written"].items()}
CHECKED = sorted(e.id for e in exercises.REGISTRY.values() if e.checker is not None)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_chapter_has_three_exercises_of_two_kinds_and_one_file_of_solutions():
    for chapter in CHAPTERS:
        found = [e for e in exercises.REGISTRY.values() if e.chapter == chapter]
        assert len(found) >= 3, chapter
        assert len({e.kind for e in found}) >= 2, chapter
        assert sum(e.checker is not None for e in found) >= 2, chapter
        assert chapter in SOLVED, f"solutions/{chapter}_*.py is missing"
    for e in exercises.REGISTRY.values():
        assert e.kind in exercises.KINDS, e
        assert e.hint and e.title, e


def test_every_exercise_has_a_reference_answer_in_its_chapter_file():
    for e in exercises.REGISTRY.values():
        solved = SOLVED[e.chapter]
        if e.checker is not None:
            assert e.id in solved["answers"], f"{e.id}: no ANSWERS entry in {solved['file']}"
        else:
            assert e.id in solved["written"], f"{e.id}: no WRITTEN entry in {solved['file']}"
    assert set(ANSWERS) <= set(CHECKED), set(ANSWERS) - set(CHECKED)
    assert set(WRITTEN) <= set(exercises.REGISTRY), set(WRITTEN) - set(exercises.REGISTRY)


@pytest.mark.parametrize("exercise", CHECKED)
def test_reference_solution_passes_its_check(exercise, capsys):
    passed, message = exercises.verdict(exercise, ANSWERS[exercise])
    assert passed, message
    assert exercises.check(exercise, ANSWERS[exercise]) is True
    assert capsys.readouterr().out.startswith(f"✓ {exercise}")


def _shares_with_ignore(labels, n_classes):
    labels = np.asarray(labels)
    valid = labels[labels != 255].astype(np.int64)
    return np.bincount(valid, minlength=n_classes) / labels.size


def _dominant_whole(labels, ratio):
    from depthg_lib.crop import dominant_class_share
    return float(np.nanmean([dominant_class_share(lab) for lab in labels]))


def _knn_by_dot(features, k):
    f = np.asarray(features, dtype=np.float64)
    sims = f @ f.T
    np.fill_diagonal(sims, -np.inf)
    return np.concatenate([np.arange(len(f))[:, None], np.argsort(-sims, axis=1)[:, :k]], 1)


def _purity_with_siblings(nns, majority, k, groups):
    q, nb = majority[nns[:, :1]], majority[nns[:, 1:k + 1]]
    keep = (q >= 0) & (nb >= 0)
    return float((q == nb)[keep].mean())


def _scores_without_matching(hist):
    hist = np.asarray(hist, dtype=np.float64)
    tp = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - tp
    return {"acc": 100 * tp.sum() / hist.sum(), "miou": 100 * np.nanmean(tp / union)}


def _kmeans_raw(codes, n_clusters, seed):
    from sklearn.cluster import KMeans
    return KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit_predict(codes)


def _probe_by_dot(codes, centroids):
    sim = torch.einsum("bchw,kc->bkhw", codes, centroids)
    return -sim.max(1).values.mean(), sim.argmax(1)


def _unpaired_interval(a, b):
    from scipy import stats
    ci = stats.ttest_ind(a, b).confidence_interval(0.95)
    return float(np.mean(a) - np.mean(b)), float(ci.low), float(ci.high)


def _shift_decayed_too_early(step, w_intra, s_intra, w_depth, s_depth, every, factor):
    f = factor ** (step // every)
    return s_intra - w_depth * f * (1 - s_depth * f) / w_intra


# One typical mistake per checked exercise: each must be rejected with a message (not a crash).
WRONG = {
    "00.1": _shares_with_ignore,
    "00.2": lambda s: (100 * max(s), 100 * max(s) / len(s)),
    "00.3": lambda labels, things: float(np.isin(labels, things).mean()),
    "01.1": lambda d: np.asarray(d) / np.asarray(d).max(),
    "01.2": lambda d: 2 * np.asarray(d) + 1,  # affine: undone by the normalisation
    "01.3": lambda s, p: float((np.subtract.outer(s[p], s[~p]) > 0).mean()),
    "02.1": lambda H, W, r: [(0, 0, int(r * min(H, W)), int(r * min(H, W)))] * 5,
    "02.2": {"coverage": 1.0, "centre_corner_overlap": 0.25},  # the r = 0.5 values
    "02.3": _dominant_whole,
    "03.1": lambda m: float(((np.bincount(m[m >= 0]) / (m >= 0).sum()) ** 2).sum()),
    "03.2": _knn_by_dot,
    "03.3": _purity_with_siblings,
    "04.1": lambda C, F, s, zero_clamp=True: -(F - s),  # forgets the clamp
    "04.2": lambda C, F, s: "attracted" if F > s else "repelled",
    "04.3": {-0.5: "separate", 0.5: "separate", 1.5: "separate"},
    "04.4": _probe_by_dot,
    "04.5": {"scale": True, "offset": True, "square": False},
    "04.6": lambda w_i, s_i, w_d, s_d: s_i - w_d * (1 - s_d),
    "05.1": _scores_without_matching,
    "05.2": _kmeans_raw,
    "05.3": {"released": 400 / 6, "corrected": 400 / 6},
    "06.1": _unpaired_interval,
    "06.2": lambda d, n_boot, seed: (float(np.mean(d)), float(np.mean(d))),  # no replacement
    "06.3": lambda sd, hw: max(2, int(np.ceil((1.96 * sd / hw) ** 2))),  # normal quantile
    "07.1": _shift_decayed_too_early,
    "07.2": {name: {"loss": True, "points": True}  # "DepthG uses depth" taken on trust
             for name in ("cityscapes-vitb8", "cocostuff27-vits8", "potsdam-vits8")},
}


def test_every_checked_exercise_has_a_wrong_answer_here():
    assert sorted(WRONG) == CHECKED


@pytest.mark.parametrize("exercise", sorted(WRONG))
def test_a_wrong_answer_is_rejected_with_a_reason(exercise):
    passed, message = exercises.verdict(exercise, WRONG[exercise])
    assert not passed, exercise
    assert message.startswith(f"{exercise}: ") and "raised" not in message, message


def test_unanswered_crashing_and_unknown_answers(capsys):
    assert exercises.check("00.1", None) is False
    assert capsys.readouterr().out == "✗ 00.1: not answered yet\n"  # no hint: it may be the answer

    def stub(labels, n_classes):
        """The chapter's template, as a learner finds it."""
        ...  # your code

    assert exercises.verdict("00.1", stub)[1] == "00.1: not answered yet"

    def forgot_return(labels, n_classes):
        counts = labels + n_classes  # noqa: F841

    assert exercises.verdict("00.1", forgot_return)[1].endswith("(it still ends in `...`?)")

    def crash(labels, n_classes):
        raise IndexError("oops")

    assert "raised IndexError: oops" in exercises.verdict("00.1", crash)[1]
    assert "solutions/" in exercises.verdict("03.4", "my words")[1]
    with pytest.raises(DepthGError, match="no exercise '9.9'"):
        exercises.check("9.9", 1)


def test_the_hint_waits_until_asked_for(capsys, monkeypatch):
    monkeypatch.setattr(core, "_WRONG_TRIES", {})
    hint = exercises.get("04.1").hint
    assert exercises.check("04.1", WRONG["04.1"]) is False
    first = capsys.readouterr().out
    assert first.startswith("✗ 04.1: ") and hint not in first and "hint=True" in first
    exercises.check("04.1", WRONG["04.1"])  # a second wrong try shows it
    assert f"hint: {hint}" in capsys.readouterr().out
    exercises.check("04.2", None, hint=True)  # or asking for it
    assert f"hint: {exercises.get('04.2').hint}" in capsys.readouterr().out


def test_list_exercises_prints_a_chapter(capsys):
    found = exercises.list_exercises("04")
    out = capsys.readouterr().out
    assert [e.id for e in found] == sorted(e.id for e in found) and len(found) >= 3
    assert out.count("\n") == len(found) and "04.1" in out
