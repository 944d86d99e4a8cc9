"""Chapter 07's conclusions in words: read from a study results file, so that the sentences
change when the numbers do, and tolerant of a results file with a deeper level of settings."""

from __future__ import annotations

from depthg_lib import conclusions, evidence


def _ci(diff, lo, hi):
    return {"diff": diff, "lo": lo, "hi": hi, "level": 0.95, "seeds": 3, "images": 10}


def _results(ci95, **extra):
    return {"knob": {"name": "camouflage", "settings": ["0", "1"]},
            "reference_arm": "depthg-corrected", "ci95": ci95, **extra}


def test_the_words_follow_the_intervals():
    hurts = _results({"depth-corrected vs stego-corrected": {
        "0": {"unsup": _ci(-4.0, -5.5, -1.5)}, "1": {"unsup": _ci(-5.0, -7.0, -2.0)}}})
    [sentence] = conclusions.study_conclusions(hurts)
    assert "-4.0 [-5.5, -1.5] at camouflage 0 and -5.0 [-7.0, -2.0] at camouflage 1" in sentence
    assert sentence.endswith("depth hurts at every setting.")
    mixed = _results({"depth-corrected vs stego-corrected": {
        "0": {"unsup": _ci(2.0, 0.5, 3.5)}, "1": {"unsup": _ci(0.1, -1.0, 1.2)}}})
    [sentence] = conclusions.study_conclusions(mixed)
    assert sentence.endswith("depth helps at camouflage 0; no detectable difference at "
                             "camouflage 1.")


def test_a_deeper_level_of_settings_is_read_too():
    deeper = _results({"depthg-corrected vs kmeans_raw_train_fit": {
        "0": {"nuisance 0.5": {"unsup": _ci(1.0, 0.2, 1.9), "linear": _ci(0, -1, 1)}}}})
    [sentence] = conclusions.study_conclusions(deeper)
    assert "+1.0 [+0.2, +1.9] at camouflage 0, nuisance 0.5" in sentence
    assert sentence.endswith("the head beats k-means.")
    assert conclusions.study_conclusions(_results({})) == []


def test_hypotheses_are_read_against_the_study():
    res = _results({
        "depth-released vs stego-released": {"0": {"unsup": _ci(-2.7, -4.3, -0.5)}},
        "fps-released vs stego-released": {"0": {"unsup": _ci(1.0, 0.3, 1.8)}},
        "fps-corrected vs stego-corrected": {"0": {"unsup": _ci(-0.2, -2.3, 1.5)}}},
        arms={"stego-corrected": {"0": {"unsup": [20.0, 22.0, 24.0]}}},
        premise={"0": {"auroc": {"depth_gain": 0.0008}}})
    h = conclusions.hypothesis_tests(res)
    assert "-2.7 [-4.3, -0.5] at camouflage 0 — hurts" in h["H1"]
    assert "helps" in h["H2"] and h["H2"].endswith("they differ at camouflage 0.")
    assert "between 2.0" in h["H4"] and "+0.0008" in h["H5"] and "Not testable" in h["H3"]


def test_relations_compare_only_within_a_dataset_and_backbone():
    rows = [{"dataset": "A", "backbone": "b", "method": "X features, no head", "kind": "other",
             "unsup_miou": 15.0},
            {"dataset": "A", "backbone": "b", "method": "DepthG", "kind": "paper",
             "unsup_miou": 23.1},
            {"dataset": "A", "backbone": "b", "method": "released", "kind": "other",
             "unsup_miou": 22.44},
            {"dataset": "C", "backbone": "b", "method": "STEGO", "kind": "paper",
             "unsup_miou": 99.0}]
    lines = evidence.relations(rows)
    assert lines == ["A · b: DepthG minus the raw features without a head: +8.1 points of "
                     "unsupervised mIoU",
                     "A · b: released minus the raw features without a head: +7.4 points of "
                     "unsupervised mIoU",
                     "A · b: released minus the paper's own row: -0.66 points of unsupervised "
                     "mIoU"]


def test_the_released_schedule_is_read_in_words():
    warm = evidence.objective_reading(evidence.released_objective("cityscapes-vitb8"))
    assert "climbs back" in warm and "warm-up" in warm
    fixed = evidence.objective_reading(evidence.released_objective("potsdam-vits8"))
    assert "stays there" in fixed and "decay factor 1)" in fixed
    coco = evidence.objective_reading(evidence.released_objective("cocostuff27-vits8"))
    assert "below 0 at first" in coco and "04.3" in coco
