"""Ablation bookkeeping: variants differ only where they should; runs resume; honest stats."""

import pytest

from depthg_lib import ablation
from depthg_lib.config import load_profile
from depthg_lib.errors import DepthGError


def test_variants_change_only_the_method_settings():
    base = load_profile("test")
    stego = ablation.method_profile(base, "stego")
    assert not stego.use_depth and stego.sampling == "random"
    released = ablation.method_profile(base, "depthg-released")
    corrected = ablation.method_profile(base, "depthg-corrected")
    assert (released.fidelity, corrected.fidelity) == ("released", "corrected")
    assert released.replace(fidelity="corrected") == corrected
    assert stego.steps == base.steps and stego.backbone == base.backbone
    short = ablation.method_profile(base.replace(ablation_steps=7), "stego")
    assert short.steps == 7 and short.val_every == 7
    with pytest.raises(DepthGError, match="unknown ablation method"):
        ablation.method_profile(base, "deeplab")


def test_run_ablation_trains_each_once_and_resumes(tmp_path, monkeypatch):
    calls = []

    def fake_train(profile, out_dir, seed, **kwargs):
        calls.append(("train", profile.fidelity, profile.use_depth, seed))
        return tmp_path / "ckpt.pt"

    def fake_evaluate(profile, checkpoint, **kwargs):
        score = 40.0 + 10 * profile.use_depth + (profile.fidelity == "corrected") + kwargs.get(
            "seed", 0)
        return {"unsupervised": {"miou": score, "acc": 2 * score},
                "linear": {"miou": score + 1, "acc": 90.0}}

    def fake_kmeans(profile, seed, **kwargs):
        calls.append(("kmeans", seed))
        return {"miou": 20.0 + seed, "acc": 50.0}

    monkeypatch.setattr(ablation, "train", fake_train)
    monkeypatch.setattr(ablation, "evaluate", fake_evaluate)
    monkeypatch.setattr(ablation, "kmeans_baseline", fake_kmeans)

    profile = load_profile("test")
    rows = ablation.run_ablation(profile, seeds=2, out_dir=tmp_path, progress=False)
    assert len(rows) == 8 and len(calls) == 8
    again = ablation.run_ablation(profile, seeds=2, out_dir=tmp_path, progress=False)
    assert len(calls) == 8 and again == rows  # stored results are not recomputed

    table = {e["method"]: e for e in ablation.summarize(rows)}
    assert table["kmeans"]["miou"] == pytest.approx(20.5)
    assert table["kmeans"]["miou_std"] == pytest.approx(0.7071, abs=1e-4)  # sample std
    assert table["kmeans"]["linear_miou"] is None
    assert table["depthg-corrected"]["miou"] == pytest.approx(51.0)
    text = ablation.format_table(ablation.summarize(rows))
    assert "| k-means on raw backbone features | 2 | 20.5 ± 0.7 |" in text
    sentence = ablation.compare(ablation.summarize(rows), "depthg-corrected", "stego")
    assert sentence.startswith("DepthG, corrected vs STEGO") and "+10.0 mIoU points" in sentence


def test_new_backbone_weights_or_force_start_runs_over(tmp_path, monkeypatch):
    """Stored results belong to the weights they were made with: other weights, other rows."""
    import depthg_lib.models as models_mod

    forced = []

    def fake_train(profile, out_dir, seed, **kwargs):
        forced.append(kwargs.get("force"))
        return tmp_path / "ckpt.pt"

    monkeypatch.setattr(ablation, "train", fake_train)
    monkeypatch.setattr(ablation, "evaluate", lambda *a, **k: {
        "unsupervised": {"miou": 1.0, "acc": 2.0}, "linear": {"miou": 3.0, "acc": 4.0}})
    monkeypatch.setattr(ablation, "kmeans_baseline", lambda *a, **k: {"miou": 1.0,
                                                                          "acc": 2.0})
    profile = load_profile("test")
    ablation.run_ablation(profile, seeds=1, out_dir=tmp_path, progress=False,
                          methods=("stego",))
    assert forced == [False]
    ablation.run_ablation(profile, seeds=1, out_dir=tmp_path, progress=False,
                          methods=("stego",))
    assert forced == [False]  # same weights: stored
    monkeypatch.setattr(models_mod, "weights_identity", lambda *a, **k: "other weights")
    ablation.run_ablation(profile, seeds=1, out_dir=tmp_path, progress=False,
                          methods=("stego",))
    assert len(forced) == 2  # new weights: trained again
    ablation.run_ablation(profile, seeds=1, out_dir=tmp_path, progress=False,
                          methods=("stego",), force=True)
    assert forced[-1] is True and len(forced) == 3
