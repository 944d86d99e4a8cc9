"""The study (chapter 06): its statistics, its results file, and a tiny run end to end."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthg_lib import ablation, config, study
from depthg_lib.config import load_profile
from depthg_lib.data import synthscenes
from depthg_lib.errors import DepthGError
from depthg_lib.study import scoring
from depthg_lib.study.splits import Setting

# ------------------------------------------------------------------------------ statistics


def _random_hists(rng, seeds, images, k=4, pixels=50):
    """Per-seed, per-image confusion matrices of a noisy labeller (S, N, k, k)."""
    out = np.zeros((seeds, images, k, k), dtype=np.int64)
    for s in range(seeds):
        for i in range(images):
            truth = rng.integers(0, k, pixels)
            pred = np.where(rng.random(pixels) < 0.5, truth, rng.integers(0, k, pixels))
            np.add.at(out[s, i], (pred, truth), 1)
    return out


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), seeds=st.integers(1, 4), images=st.integers(2, 8))
def test_paired_bootstrap_properties(seed, seeds, images):
    rng = np.random.default_rng(seed)
    a, b = _random_hists(rng, seeds, images), _random_hists(rng, seeds, images)
    metric = study.unsup_miou
    ab = study.paired_bootstrap(a, b, metric, n_boot=60, seed=seed)
    # the point estimate is the mean over seeds of the per-seed differences
    want = np.mean([metric(a[s].sum(0)) - metric(b[s].sum(0)) for s in range(seeds)])
    assert ab["diff"] == pytest.approx(want)
    assert ab["lo"] <= ab["hi"] and (ab["seeds"], ab["images"]) == (seeds, images)
    # swapping the two sides mirrors everything (same draws for both)
    ba = study.paired_bootstrap(b, a, metric, n_boot=60, seed=seed)
    assert ba["diff"] == pytest.approx(-ab["diff"])
    assert (ba["lo"], ba["hi"]) == pytest.approx((-ab["hi"], -ab["lo"]))
    # a method against itself: exactly zero, no spread
    aa = study.paired_bootstrap(a, a, metric, n_boot=30, seed=seed)
    assert (aa["diff"], aa["lo"], aa["hi"]) == (0.0, 0.0, 0.0)


def test_bootstrap_sees_a_clear_win_and_pairing_removes_shared_noise():
    rng = np.random.default_rng(0)
    k, n = 3, 12
    perfect = np.zeros((3, n, k, k), dtype=np.int64)
    for s in range(3):
        for i in range(n):
            counts = rng.integers(5, 40, k)
            perfect[s, i][np.arange(k), np.arange(k)] = counts
    noisy = _random_hists(rng, 3, n, k=k)
    ci = study.paired_bootstrap(perfect, noisy, study.linear_miou, n_boot=200)
    assert ci["lo"] > 0 and study.verdict(ci).startswith("helps")
    assert study.verdict({"lo": -1.0, "hi": 2.0}).startswith("no detectable")
    with pytest.raises(DepthGError, match="same seeds and images"):
        study.paired_bootstrap(perfect, noisy[:, :5], study.linear_miou)


def test_metrics_match_by_hand():
    h = np.array([[3, 0], [1, 4]])  # rows: prediction, columns: class
    # class 0: tp 3, fp 0, fn 1 → 75 %; class 1: tp 4, fp 1, fn 0 → 80 %
    assert scoring.linear_miou(h) == pytest.approx(77.5)
    assert scoring.unsup_miou(h[::-1]) == pytest.approx(77.5)  # clusters matched first


# ------------------------------------------------------------------------------ the knob


def test_camouflage_keeps_layout_and_labels_but_dresses_things_like_the_ground():
    seed = np.random.default_rng([3, 1, 0])
    plain = synthscenes.render_scene(seed, 48)
    again = synthscenes.render_scene(np.random.default_rng([3, 1, 0]), 48, camouflage=0.0)
    hidden = synthscenes.render_scene(np.random.default_rng([3, 1, 0]), 48, camouflage=1.0)
    assert np.array_equal(plain.image, again.image)  # the knob at 0 changes nothing
    assert np.array_equal(plain.label, hidden.label)
    things = np.isin(plain.label, synthscenes.THING_IDS)
    assert things.any() and not np.array_equal(plain.image[things], hidden.image[things])
    assert np.array_equal(plain.image[~things], hidden.image[~things]) or \
        np.abs(plain.image[~things].astype(int) - hidden.image[~things]).mean() < 3  # shadows


# ------------------------------------------------------------------------------ end to end


class _FakeStudy:
    """Just enough of a Study for `Study.run_dir`."""

    def __init__(self, out):
        self.out = out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A whole study on a tiny `test` profile in a temporary data root (two arms, two seeds)."""
    root = tmp_path_factory.mktemp("study")
    profile = load_profile("test", data_root=str(root / "data"), synth_n_train=4,
                           synth_n_val=4, synth_size=64, res=48, eval_res=48, knn_store=6,
                           samples=4, fps_min_samples=3, batch_size=4, ablation_steps=2,
                           study_nuisance=[1.0])
    out = root / "out"
    results = study.run_study(profile, out_dir=out, seeds=2, device="cpu", progress=False,
                              n_boot=40)
    return profile, out, results


def test_results_file_has_the_schema_outside_checks_read(tiny):
    profile, out, results = tiny
    assert set(study.RESULT_KEYS) <= set(results)
    assert results == __import__("json").loads((out / "results.json").read_text())
    assert results["splits"]["train"] == profile.synth_seed
    assert len({results["splits"][k] for k in ("train", "tune", "report")}) == 3
    assert results["seeds"] == [0, 1]
    assert results["knob"]["settings"] == ["0", "0+nuisance1"]
    assert results["complete"] and results["runs_done"] == 8
    for arm in ("stego-corrected", "depthg-corrected"):
        scores = results["arms"][arm]["0"]
        assert len(scores["unsup"]) == len(scores["linear"]) == 2
        assert all(0 <= v <= 100 for v in scores["unsup"] + scores["linear"])
    assert 0 <= results["baselines"]["kmeans_raw_train_fit"]["0"] <= 100
    ci = results["ci95"]["depthg-corrected vs stego-corrected"]["0"]["unsup"]
    assert ci["lo"] <= ci["hi"] and ci["seeds"] == 2 and ci["images"] == 4
    assert "depthg-corrected vs kmeans_raw_train_fit" in results["ci95"]
    assert results["command"].startswith("python -m depthg_lib.study")
    assert results["machine"] and results["date"]
    assert 0.5 <= results["premise"]["0"]["auroc"]["feature"] <= 1.0 or \
        0 <= results["premise"]["0"]["auroc"]["feature"] <= 1.0
    curves = results["validation"]["curves"]["stego-corrected"]
    assert curves["step"][-1] == 2 and len(curves["val_cluster_miou"]) == len(curves["step"])
    for name in ("validation", "knob", "arms"):
        assert (out / f"study_{name}.png").stat().st_size > 0
    assert "k-means on raw backbone features" in study.results_table(results)


def test_study_scores_a_head_as_evaluate_does(tiny):
    from depthg_lib.evaluate import evaluate

    profile, out, results = tiny
    variant = ablation.arm_profile(profile, "stego-corrected", steps=2)
    ckpt = study.Study.run_dir(_FakeStudy(out), "stego-corrected", Setting(0.0), 0) \
        / "checkpoints" / "final.pt"
    report = variant.replace(dataset_dir=study.split_dir(profile, "report", 0.0).name)
    metrics = evaluate(report, ckpt, device="cpu", progress=False, write=False)
    assert results["arms"]["stego-corrected"]["0"]["unsup"][0] == pytest.approx(
        metrics["unsupervised"]["miou"], abs=1e-2)
    assert results["arms"]["stego-corrected"]["0"]["linear"][0] == pytest.approx(
        metrics["linear"]["miou"], abs=1e-2)


def test_resume_trains_nothing_and_another_report_seed_reuses_the_heads(tiny, monkeypatch):
    profile, out, results = tiny

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(study.runner.ablation, "run_arm", no_training)
    again = study.run_study(profile, out_dir=out, seeds=2, device="cpu", progress=False,
                            n_boot=40)
    assert again["arms"] == results["arms"] and again["ci95"] == results["ci95"]
    partial = study.run_study(profile, out_dir=out, seeds=3, device="cpu", progress=False,
                              n_boot=40, write_only=True)  # a third seed, not run: reported so
    assert not partial["complete"] and (partial["runs_done"], partial["runs_total"]) == (8, 12)
    monkeypatch.undo()
    ckpt = study.Study.run_dir(_FakeStudy(out), "stego-corrected", Setting(0.0), 0) \
        / "checkpoints" / "final.pt"
    before = ckpt.stat().st_mtime_ns
    other = study.run_study(profile, out_dir=out, seeds=2, report_seed=99, device="cpu",
                            progress=False, n_boot=40)
    assert other["splits"]["report"] == 99 and "--report-seed 99" in other["command"]
    assert ckpt.stat().st_mtime_ns == before  # re-scored, not re-trained
    with pytest.raises(DepthGError, match="--resume"):
        study.run_study(profile, out_dir=out, seeds=2, resume=False, progress=False)


def test_splits_must_be_disjoint():
    with pytest.raises(DepthGError, match="three different seeds"):
        load_profile("test", report_seed=7)


def test_one_shift_offset_at_the_nuisance_settings(tmp_path):
    """Offsets are no longer tuned by training: a profile listing several is told to keep one."""
    profile = load_profile("test", study_shift_offsets=[0.0, 0.1])
    with pytest.raises(DepthGError, match="study_shift_offsets takes one offset"):
        study.Study(profile, tmp_path, 1, "cpu", False, 10, "test")


def test_runs_made_with_another_objective_are_not_reused(tiny, monkeypatch):
    """A change in what the loss computes (losses.OBJECTIVE_VERSION) makes stored arms stale."""
    profile, out, _ = tiny
    monkeypatch.setattr(study.runner, "OBJECTIVE_VERSION", -1)
    stale = study.run_study(profile, out_dir=out, seeds=2, device="cpu", progress=False,
                            n_boot=40, write_only=True)
    assert stale["runs_done"] == 0 and not stale["complete"]


def test_plateau_line_reads_the_last_quarter_of_every_curve():
    from depthg_lib.study.readme import plateau_line

    steps = [0, 10, 20, 30, 40, 50, 60, 70]
    curves = {"a": {"step": steps, "gain_last_quarter": 0.3},
              "b": {"step": steps, "gain_last_quarter": -1.25}}
    line = plateau_line({"validation": {"split": "tune", "knob": "0", "curves": curves}})
    assert "step 50 → 70" in line and "-1.25 (b)" in line and "+0.30 (a)" in line
    assert plateau_line({"validation": {"split": "tune", "knob": "0", "curves": {}}}) is None


def _tiny_study(profile, out):
    return study.Study(profile, out, 2, "cpu", False, 40, "test")


def test_nuisance_reaches_every_reader_identically(tiny, monkeypatch):
    """Arms (their training cache, kNN and report features) and baselines (k-means, linear
    probe) read the same nuisanced features: the clean ones plus `Nuisance.add` of each
    source, and a second, fresh study computes them bit for bit again."""
    from depthg_lib.nuisance import crop_sources, image_sources
    from depthg_lib.study import runner

    profile, out, _ = tiny
    st = _tiny_study(profile, out)
    clean, noisy = Setting(0.0), Setting(0.0, 1.0)
    kd0, kd1 = st.knob(clean), st.knob(noisy)
    nz = st.nuisance(noisy)
    fid = profile.fidelity
    train0 = np.asarray(kd0.train_data[fid][1]["train"].feats, dtype=np.float32)
    want = nz.add(torch.from_numpy(train0), crop_sources(len(train0))).numpy()
    got = np.asarray(kd1.train_data[fid][1]["train"].feats, dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)  # the fp16 cache
    report = image_sources(len(kd0.report[fid].feats), f"report{profile.report_seed}")
    assert torch.equal(kd1.report[fid].feats, nz.add(kd0.report[fid].feats, report))
    assert torch.equal(kd1.report[fid].feats_flip, nz.add(kd0.report[fid].feats_flip, report))
    # what each reader is handed during a study
    seen = {}
    real_fit, real_probe = scoring.fit_centroids, scoring.linear_probe_raw

    def fit(vectors, k, seed, *a, **kw):
        seen.setdefault("kmeans", vectors.clone())
        return real_fit(vectors, k, seed, *a, **kw)

    def probe(feats, *a, **kw):
        seen.setdefault("probe", np.asarray(feats, dtype=np.float32).copy())
        return real_probe(feats, *a, **kw)

    def arm(variant, run_dir, seed, data=None, **kw):
        seen.setdefault("arm", (data.cache_dir, data.knn.copy()))
        raise RuntimeError("stop")

    monkeypatch.setattr(scoring, "fit_centroids", fit)
    monkeypatch.setattr(scoring, "linear_probe_raw", probe)
    monkeypatch.setattr(runner.ablation, "run_arm", arm)
    other = _tiny_study(profile, out.parent / "out_readers")
    other.baseline_rows(noisy, 0)
    with pytest.raises(RuntimeError, match="stop"):
        other.arm_row("stego-corrected", noisy, 0)
    np.testing.assert_array_equal(seen["probe"], got)
    assert torch.equal(seen["kmeans"], scoring.cached_feats(kd1.train_data[fid][1]["train"]))
    cache_dir, knn = seen["arm"]
    np.testing.assert_array_equal(np.load(Path(cache_dir) / "feats_train.npy"),
                                  kd1.train_data[fid][1]["train"].feats)
    np.testing.assert_array_equal(knn, kd1.train_data[fid][0].knn)
    # deterministic: a second study, built from scratch, adds the same nuisance
    again = _tiny_study(profile, out).knob(noisy)
    assert torch.equal(again.report[fid].feats, kd1.report[fid].feats)


def test_shipped_heads_rescore_without_their_run_folders(tiny, tmp_path, monkeypatch):
    """--report-seed on a clone without run folders: the heads shipped by tools/study_ship.py
    are scored, nothing is trained, and the numbers are the run folders' (fp16 weights moved
    one of them by 0.1)."""
    from depthg_lib.study import runner, shipped

    spec = importlib.util.spec_from_file_location(
        "study_ship", config.REPO_ROOT / "tools" / "study_ship.py")
    study_ship = importlib.util.module_from_spec(spec)  # a developer tool, outside the library
    spec.loader.exec_module(study_ship)
    profile, out, results = tiny
    monkeypatch.setattr(runner, "load_shipped",
                        lambda head_id: shipped.load_shipped(head_id, tmp_path / "weights"))
    heads = {r["head_id"] for r in study.runner.Store(out).rows if "head_id" in r}
    assert study_ship.ship_heads(_tiny_study(profile, out), tmp_path / "weights") == {
        "shipped": len(heads)} and len(heads) >= 8  # the study's arms and the regime check's
    fresh = tmp_path / "fresh"  # no run folders, no store: a fresh clone

    def no_training(*args, **kwargs):
        raise AssertionError("a shipped head was trained again")

    monkeypatch.setattr(runner.ablation, "run_arm", no_training)
    # another report split: scored from the run folders, and from the shipped heads alone
    results = study.run_study(profile, out_dir=out, seeds=2, report_seed=99, device="cpu",
                              progress=False, n_boot=40)
    again = study.run_study(profile, out_dir=fresh, seeds=2, report_seed=99, device="cpu",
                            progress=False, n_boot=40)
    assert again["runs_done"] == results["runs_done"] == 8
    for arm, by_knob in results["arms"].items():
        for knob, scores in by_knob.items():
            got = again["arms"][arm][knob]
            assert got["unsup"] == scores["unsup"] and got["linear"] == scores["linear"]


def test_claims_are_read_from_the_numbers():
    from depthg_lib.study.claims import claims

    def result(head_lo, depth_lo):
        ci = {"diff": head_lo + 2, "lo": head_lo, "hi": head_lo + 4, "seeds": 5, "images": 96}
        d = {"diff": depth_lo + 1, "lo": depth_lo, "hi": depth_lo + 2, "seeds": 5,
             "images": 96}
        return {"knob": {"settings": ["0", "0+nuisance1"],
                         "labels": {"0": "camouflage 0", "0+nuisance1": "nuisance 1"}},
                "ci95": {"stego-corrected vs kmeans_raw_train_fit": {
                    "0": {"unsup": {**ci, "diff": -2.0, "lo": -4.0, "hi": 0.5}},
                    "0+nuisance1": {"unsup": ci}},
                    "depthg-corrected vs stego-corrected": {"0+nuisance1": {"unsup": d}}}}

    win = claims(result(1.5, -1.0))
    assert win["head"].startswith("the head helps when") and "nuisance 1" in win["head"]
    assert "+3.5 [+1.5, +5.5]" in win["head"] and win["head_wins"][0]["setting"] == "0+nuisance1"
    assert win["depth"].startswith("depth does not help")
    lose = claims(result(-0.5, 0.5))
    assert lose["head"].startswith("the head does not beat") and not lose["head_wins"]
    assert lose["depth"].startswith("depth helps when nuisance 1")


def test_fit_cache_fits_again_when_the_training_features_or_the_head_change(tmp_path):
    """A kept fit is read back only for the same training features, head and settings."""
    from types import SimpleNamespace

    from depthg_lib.io import save_json
    from depthg_lib.study.scoring import FitCache, fit_identity

    def features(digest):  # the cache record of the training crops' features
        save_json(tmp_path / "feats" / "features.json", {
            "settings": {"res": 48}, "splits": {"train": {"inputs": {"digest": digest}}}})

    features("a")
    cache = SimpleNamespace(folder=tmp_path / "feats", split="train")
    head = torch.nn.Conv2d(4, 3, 1)
    fits, made = FitCache(tmp_path / "fits"), []

    def fit():
        made.append(1)
        return torch.full((2, 3), float(len(made)))

    def centroids():
        return fits.centroids(fit_identity("kmeans_codes", cache, 0, 2, head), fit)

    first = centroids()
    assert torch.equal(centroids(), first) and len(made) == 1
    assert fits.centroids(fit_identity("kmeans_codes", cache, 1, 2, head), fit)[0, 0] == 2
    with torch.no_grad():
        head.bias.add_(1e-3)  # another head
    assert centroids()[0, 0] == 3
    features("b")  # the crops cut afresh: their features are others
    assert centroids()[0, 0] == 4
    for path in (tmp_path / "fits").glob("*.npz"):
        path.write_bytes(b"damaged")
    assert centroids()[0, 0] == 5  # an unreadable file is fitted again, not an error
    nothing_kept = FitCache(None)
    nothing_kept.centroids(fit_identity("kmeans_codes", cache, 0, 2, head), fit)
    assert len(made) == 6


def test_rescoring_another_report_split_reuses_the_fits_on_the_training_crops(
        tiny, tmp_path, monkeypatch):
    """`rescore_published` keeps the k-means and linear-probe fits on the training crops: a
    second report split fits only the transductive k-means and gives the numbers fitting
    afresh gives; a changed head has its codes' k-means fitted again."""
    import shutil

    from depthg_lib.study import runner

    profile, out, _ = tiny
    calls = []
    real_fit, real_probe, real_load = (scoring.fit_centroids, scoring.linear_probe_raw,
                                       runner.load_checkpoint)
    monkeypatch.setattr(scoring, "fit_centroids",
                        lambda *a, **k: calls.append("kmeans") or real_fit(*a, **k))
    monkeypatch.setattr(scoring, "linear_probe_raw",
                        lambda *a, **k: calls.append("probe") or real_probe(*a, **k))

    def copy(name):  # the tiny study's run folders (its heads), none of its stored rows
        shutil.copytree(out / "runs", tmp_path / name / "runs")
        return tmp_path / name

    def rescore(name, report_seed, **kw):
        calls.clear()
        return study.rescore_published(report_seed, profile=profile, out_dir=copy(name),
                                       device="cpu", **kw)

    first = rescore("a", 98)
    settings = len(first["knob"]["settings"])
    assert first["seeds"] == [0] and first["runs_done"] == 2 * settings
    assert calls.count("probe") == settings and calls.count("kmeans") > 2 * settings
    kept = rescore("b", 97)
    assert calls == ["kmeans"] * settings  # the transductive k-means alone
    fresh = study.run_study(profile.replace(study_knob=profile.study_knob[:1]),
                            out_dir=copy("c"), seeds=1, report_seed=97, device="cpu",
                            progress=False, n_boot=500, fits_dir=tmp_path / "fresh_fits")
    assert calls.count("probe") == settings
    assert kept["arms"] == fresh["arms"] and kept["baselines"] == fresh["baselines"]
    assert kept["ci95"] == fresh["ci95"]

    def nudged(*a, **k):  # another head (retrained, say)
        model = real_load(*a, **k)
        with torch.no_grad():
            next(model.head.parameters()).add_(1e-3)
        return model

    monkeypatch.setattr(runner, "load_checkpoint", nudged)
    rescore("d", 96)
    heads = [r for r in study.runner.Store(tmp_path / "d").rows if r["kind"] in ("arm",
                                                                                  "regime")]
    assert "probe" not in calls and calls.count("kmeans") == settings + len(heads)
