"""Evaluation (docs/method.md §9, §14): golden metrics, metric properties, the evaluation
pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from depthg_lib import evalset
from depthg_lib import evaluate as ev
from depthg_lib.errors import DepthGError

GOLDEN = Path(__file__).parent / "data" / "golden"


# ------------------------------------------------------------------ golden (released metric)

@pytest.mark.parametrize("extra", [0, 1])
def test_metrics_match_golden(extra):
    g = np.load(GOLDEN / f"f_metrics_extra{extra}.npz")
    hist = ev.confusion_histogram(g["preds"], g["target"], 5, extra_clusters=extra)
    assert hist.dtype == np.int64 and hist.shape == (5 + extra, 5)
    np.testing.assert_array_equal(hist, g["stats"])
    res = ev.scores(hist, hungarian=True)
    np.testing.assert_array_equal(res["assignment"][0], g["assign_rows"])
    np.testing.assert_array_equal(res["assignment"][1], g["assign_cols"])
    np.testing.assert_array_equal(res["histogram"], g["histogram"])
    # golden values went through float32 in torch: agree to ~1e-6 relative
    assert res["miou"] == pytest.approx(float(g["miou"]), abs=1e-5)
    assert res["acc"] == pytest.approx(float(g["acc"]), abs=1e-5)


def test_torch_inputs_and_extra_cluster_dropped_as_released():
    g = np.load(GOLDEN / "f_metrics_extra1.npz")
    hist = ev.confusion_histogram(torch.from_numpy(g["preds"]), torch.from_numpy(g["target"]),
                                  5, extra_clusters=1)
    assert hist[5].sum() == 0  # golden note 5: predictions >= n_classes never count
    kept = ev.confusion_histogram(g["preds"], g["target"], 5, extra_clusters=1, drop_extra=False)
    valid = (g["target"] >= 0) & (g["target"] < 5)
    assert kept[5].sum() == ((g["preds"] == 5) & valid).sum() > 0
    np.testing.assert_array_equal(kept[:5], hist[:5])


def test_unmatched_clusters_count_as_errors():
    # 3 clusters, 2 classes: cluster 2 cannot be matched; its pixels are wrong predictions
    hist = np.array([[10, 0], [0, 10], [5, 5]])
    res = ev.scores(hist)
    assert res["acc"] == pytest.approx(100 * 20 / 30)
    assert list(res["cluster_to_class"]) == [0, 1, -1]
    assert res["histogram"].shape == (3, 3)
    # class IoUs 10/15 each and the unmatched row's 0, averaged as released
    assert res["miou"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 0) / 3)


def test_linear_scores_use_no_matching():
    hist = np.array([[0, 10], [10, 0]])
    assert ev.scores(hist, hungarian=False)["acc"] == 0
    assert ev.scores(hist, hungarian=True)["acc"] == 100


def test_iou_formula_and_undefined_classes():
    hist = np.array([[6, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2 never occurs nor is predicted
    res = ev.scores(hist, hungarian=False)
    assert res["iou"][0] == pytest.approx(100 * 6 / (6 + 2 + 1))
    assert res["iou"][1] == pytest.approx(100 * 3 / (3 + 1 + 2))
    assert np.isnan(res["iou"][2])
    assert res["miou"] == pytest.approx((res["iou"][0] + res["iou"][1]) / 2)
    assert res["acc"] == pytest.approx(100 * 9 / 12)


# ------------------------------------------------------------------ properties

label_maps = st.integers(min_value=0, max_value=10_000).map(
    lambda seed: np.random.default_rng(seed))


@settings(max_examples=25, deadline=None)
@given(rng=label_maps, n=st.integers(2, 6), extra=st.integers(0, 2))
def test_permuting_cluster_ids_keeps_hungarian_scores(rng, n, extra):
    target = rng.integers(-1, n, size=(2, 12, 12))
    # clusters that mostly follow the classes (a unique best matching), plus noise
    k = n + extra
    noise = rng.integers(0, k, target.shape)
    preds = np.where(rng.random(target.shape) < 0.5, target.clip(0), noise)
    perm = rng.permutation(k)
    a = ev.scores(ev.confusion_histogram(preds, target, n, extra, drop_extra=False))
    b = ev.scores(ev.confusion_histogram(perm[preds], target, n, extra, drop_extra=False))
    assert a["acc"] == pytest.approx(b["acc"])
    assert a["miou"] == pytest.approx(b["miou"])
    np.testing.assert_array_equal(b["cluster_to_class"][perm], a["cluster_to_class"])


@settings(max_examples=25, deadline=None)
@given(rng=label_maps, n=st.integers(2, 6))
def test_permutation_keeps_accuracy_even_with_ties(rng, n):
    """Random clusters often tie; the matched pixel count (hence Acc) is still invariant."""
    target = rng.integers(-1, n, size=(2, 9, 9))
    preds = rng.integers(0, n, size=(2, 9, 9))
    perm = rng.permutation(n)
    a = ev.scores(ev.confusion_histogram(preds, target, n))
    b = ev.scores(ev.confusion_histogram(perm[preds], target, n))
    assert a["acc"] == pytest.approx(b["acc"])


@settings(max_examples=25, deadline=None)
@given(rng=label_maps, n=st.integers(2, 6))
def test_perfect_prediction_scores_100_under_any_renaming(rng, n):
    target = rng.integers(0, n, size=(3, 7, 7))
    target[0, 0, : n] = np.arange(n)  # every class present
    perm = rng.permutation(n)
    res = ev.scores(ev.confusion_histogram(perm[target], target, n))
    assert res["acc"] == pytest.approx(100) and res["miou"] == pytest.approx(100)
    np.testing.assert_array_equal(res["cluster_to_class"][perm], np.arange(n))


@settings(max_examples=25, deadline=None)
@given(rng=label_maps, n=st.integers(2, 6), ignore=st.sampled_from([-1, 255, 99]))
def test_ignore_pixels_never_count(rng, n, ignore):
    target = rng.integers(0, n, size=(2, 8, 8))
    preds = rng.integers(0, n, size=(2, 8, 8))
    mask = rng.random(target.shape) < 0.3
    target[mask] = ignore
    hist = ev.confusion_histogram(preds, target, n)
    assert hist.sum() == (~mask).sum()
    other = preds.copy()
    other[mask] = rng.integers(0, n, size=mask.sum())
    np.testing.assert_array_equal(ev.confusion_histogram(other, target, n), hist)


# ------------------------------------------------------------------ preprocessing

@pytest.mark.parametrize("hw", [(60, 80), (81, 50), (32, 32)])
def test_resize_crop_shorter_side_then_centre(hw):
    h, w = hw
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    label = (np.arange(h * w).reshape(h, w) % 7).astype(np.uint8)
    label[0, 0] = 255
    img, lab = evalset.resize_crop(image, 24, label)
    assert img.shape == (24, 24, 3) and lab.shape == (24, 24)
    assert set(np.unique(lab)) <= set(np.unique(label))  # nearest: no new label values
    img_b, _ = evalset.resize_crop(image, 24, None, image_mode="bilinear")
    assert img_b.shape == (24, 24, 3)


def test_flip_averaged_codes_are_mirror_symmetric_for_a_symmetric_model():
    backbone = torch.nn.Conv2d(3, 4, 1)
    head = torch.nn.Conv2d(4, 5, 1)
    x = torch.rand(2, 3, 8, 10)
    code = ev.flip_averaged_codes(backbone, head, x)
    code_m = ev.flip_averaged_codes(backbone, head, x.flip(dims=[3]))
    torch.testing.assert_close(code, code_m.flip(dims=[3]))


# ------------------------------------------------------------------ the pipeline, on fakes

class FakeClusterProbe(torch.nn.Module):
    """Same interface as models.ClusterProbe (docs/method.md §14): cosine similarity to
    centroids."""

    def __init__(self, clusters):
        super().__init__()
        self.clusters = torch.nn.Parameter(torch.as_tensor(clusters, dtype=torch.float32))

    def forward(self, x, alpha=None, log_probs=False):
        inner = torch.einsum("bchw,nc->bnhw", torch.nn.functional.normalize(x, dim=1),
                             torch.nn.functional.normalize(self.clusters, dim=1))
        if log_probs:
            return torch.log_softmax(inner * alpha, dim=1)
        probs = torch.softmax(inner * alpha, dim=1)
        return -(probs * inner).sum(1).mean(), probs


class FakeBackbone(torch.nn.Module):
    """Patch 8: average colour of each patch, plus a constant channel."""

    patch_size, dim = 8, 4

    def forward(self, x):
        pooled = torch.nn.functional.avg_pool2d(x, 8)
        return torch.cat([pooled, torch.ones_like(pooled[:, :1])], dim=1)


class FakeReader:
    """Left part red = class 0, right part blue = class 1, class 2 absent; a band ignored."""

    has_labels, n_classes, class_names = True, 3, ["red", "blue", "green"]

    def __init__(self, n=3, labels=True):
        self.n = n
        self.has_labels = labels

    def names(self, split):
        return [f"im{i}" for i in range(self.n)]

    def _label(self, name):
        i = int(name[2:])
        lab = np.zeros((40, 56), np.uint8)
        lab[:, 24 + 8 * (i % 2):] = 1
        lab[:2] = 255
        return lab

    def load_image(self, split, name):
        lab = self._label(name)
        img = np.zeros((40, 56, 3), np.uint8)
        img[lab == 0] = (200, 30, 30)
        img[lab == 1] = (30, 30, 200)
        img[lab == 255] = (30, 200, 30)
        return img

    def load_label(self, split, name):
        return self._label(name) if self.has_labels else None


def _fake_model():
    from types import SimpleNamespace

    head = torch.nn.Conv2d(4, 4, 1)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4)[:, :, None, None])
        head.bias.zero_()
    linear = torch.nn.Conv2d(4, 3, 1)
    with torch.no_grad():
        weight = torch.tensor([[8.0, 0, -8, 0], [-8, 0, 8, 0], [0, 0, 0, -1]])
        linear.weight.copy_(weight[..., None, None])
        linear.bias.zero_()
    # cluster 0 looks blue, cluster 1 red: Hungarian must swap them
    probe = FakeClusterProbe([[0.1, 0.1, 1.0, 0.5], [1.0, 0.1, 0.1, 0.5], [0, 1.0, 0, 0.5]])
    return SimpleNamespace(head=head, cluster_probe=probe, linear_probe=linear,
                           meta={"step": 7})


@pytest.fixture
def fake_stage(monkeypatch, tmp_path):
    """evaluate() wired to the fakes; the profile `test` with its outputs in tmp_path."""
    from depthg_lib.config import load_profile

    profile = load_profile("test", num_workers=0, eval_res=32, n_classes=3)
    ckpt = tmp_path / "run" / "checkpoints" / "final.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"fake")
    reader = FakeReader()
    monkeypatch.setattr(ev, "open_split", lambda p, split: (reader, reader.names(split)))
    monkeypatch.setattr(ev, "_load_model", lambda p, c, d: (Path(c), _fake_model(), FakeBackbone))
    return profile, ckpt


def test_evaluate_scores_writes_metrics_and_figures(fake_stage):
    profile, ckpt = fake_stage
    m = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)
    out = ckpt.parent.parent / "eval"
    assert Path(m["out_dir"]) == out
    on_disk = json.loads((out / "metrics.json").read_text())
    for kind in ("unsupervised", "linear"):
        assert on_disk[kind]["acc"] > 90 and 0 <= on_disk[kind]["miou"] <= 100
        assert set(on_disk[kind]["iou"]) == {"red", "blue", "green"}
        assert on_disk[kind]["iou"]["green"] is None  # absent class: undefined IoU
    assert on_disk["unsupervised"]["cluster_to_class"][:2] == [1, 0]
    assert on_disk["crf"] is False and on_disk["n_images"] == 3
    assert on_disk["fidelity"] == profile.fidelity and on_disk["checkpoint"] == str(ckpt)
    for fig in ("confusion.png", "class_iou.png", "examples.png"):
        assert (out / fig).stat().st_size > 1000
    side = json.loads(ev.assignment_file(ckpt).read_text())
    assert side["cluster_to_class"][:2] == [1, 0] and side["class_names"][0] == "red"
    # every labelled, non-ignored pixel counted once
    assert np.asarray(on_disk["unsupervised"]["histogram"]).sum() == 3 * 30 * 32


def test_evaluate_with_crf_and_without_writing(fake_stage, monkeypatch):
    pytest.importorskip("pydensecrf.densecrf")
    monkeypatch.setenv("DEPTHG_CRF_WORKERS", "0")
    profile, ckpt = fake_stage
    m = ev.evaluate(profile, checkpoint=ckpt, device="cpu", crf=True, max_images=2,
                    write=False, progress=False)
    assert m["crf"] is True and m["n_images"] == 2 and "out_dir" not in m
    assert m["unsupervised"]["acc"] > 90
    assert not (ckpt.parent.parent / "eval").exists()
    assert not ev.assignment_file(ckpt).exists()


def test_eval_dir_rules():
    from depthg_lib.config import load_profile

    profile = load_profile("test")
    assert ev.eval_dir_for(profile, None) == profile.paths.eval_dir
    assert ev.eval_dir_for(profile, ev.default_checkpoint(profile)) == profile.paths.eval_dir
    assert ev.eval_dir_for(profile, "/x/abl/checkpoints/final.pt") == Path("/x/abl/eval")
    assert ev.eval_dir_for(profile, "/x/model.pt") == Path("/x/eval_model")



def test_eval_dir_of_another_profiles_run_is_this_profiles(tmp_path, monkeypatch):
    from depthg_lib.config import load_profile

    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    profile = load_profile("test")
    other = tmp_path / "runs" / "res96" / "train" / "checkpoints" / "final.pt"
    assert ev.eval_dir_for(profile, other) == tmp_path / "runs" / "test" / "eval_res96-train-final"
    own = tmp_path / "runs" / "test" / "abl" / "checkpoints" / "final.pt"
    assert ev.eval_dir_for(profile, own) == own.parent.parent / "eval"
    assert ev.eval_dir_for(profile, "/x/abl/checkpoints/final.pt", trained_with="res96") == \
        tmp_path / "runs" / "test" / "eval_x-abl-final"


@pytest.mark.parametrize("where", ["runs", "elsewhere"])
def test_evaluating_another_runs_checkpoint_writes_nothing_into_that_run(fake_stage, tmp_path,
                                                                        monkeypatch, where):
    """`evaluate --profile test --checkpoint <a res96 run>/final.pt`: metrics, figures and the
    cluster matching all go under runs/test/; the other run's folder is left as it was."""
    from depthg_lib.config import load_profile

    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    profile = load_profile("test", num_workers=0, eval_res=32, n_classes=3)
    base = tmp_path / "runs" if where == "runs" else tmp_path / "mine"
    ckpt = base / "res96" / "train" / "checkpoints" / "final.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"fake")
    model = _fake_model()
    model.meta = {"step": 7, "profile": {"name": "res96"}}  # trained with another profile
    monkeypatch.setattr(ev, "_load_model", lambda p, c, d: (Path(c), model, FakeBackbone))
    before = sorted(p for p in (base / "res96").rglob("*"))
    m = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)
    out = Path(m["out_dir"])
    assert out.is_relative_to(profile.paths.run_dir) and (out / "metrics.json").exists()
    assert (out / "final.classes.json").exists()
    assert sorted(p for p in (base / "res96").rglob("*")) == before


def test_unlabelled_split_is_one_clear_error(monkeypatch):
    from depthg_lib.config import load_profile

    monkeypatch.setattr(evalset, "reader_for_profile", lambda profile: FakeReader(labels=False))
    with pytest.raises(DepthGError, match="has no labels"):
        evalset.open_split(load_profile("test"), "val")


def test_class_count_mismatch_is_one_clear_error(monkeypatch):
    from depthg_lib.config import load_profile

    monkeypatch.setattr(evalset, "reader_for_profile", lambda profile: FakeReader())
    with pytest.raises(DepthGError, match="n_classes 12 .* 3 classes"):
        evalset.open_split(load_profile("test"), "val")


def test_missing_checkpoint_names_the_train_command(tmp_path):
    from depthg_lib.config import load_profile

    profile = load_profile("test", name="test-never-trained")
    with pytest.raises(DepthGError, match="python -m depthg_lib.train --profile"):
        ev._load_model(profile, None, torch.device("cpu"))
    with pytest.raises(DepthGError, match="--checkpoint"):
        ev._load_model(profile, tmp_path / "none.pt", torch.device("cpu"))


def test_kmeans_baseline_on_raw_features(monkeypatch):
    from depthg_lib.config import load_profile

    monkeypatch.setattr(ev, "load_backbone", lambda *a, **k: FakeBackbone())
    reader = FakeReader()
    monkeypatch.setattr(ev, "open_split", lambda p, split: (reader, reader.names(split)))
    profile = load_profile("test", num_workers=0, eval_res=32, n_classes=3)
    res = ev.kmeans_baseline(profile, device="cpu", progress=False)
    assert res["method"] == "kmeans" and res["n_images"] == 3
    # 3 clusters for red, blue and the mixed patches at edges: most pixels still match
    assert res["acc"] > 70
    assert np.asarray(res["histogram"]).sum() == 3 * 30 * 32


@pytest.mark.parametrize("fidelity", ["released", "corrected"])
def test_evaluate_with_an_extra_cluster(fake_stage, monkeypatch, fidelity):
    pytest.importorskip("pydensecrf.densecrf")
    profile, ckpt = fake_stage
    profile = profile.replace(extra_clusters=1, fidelity=fidelity)
    model = _fake_model()
    model.cluster_probe = FakeClusterProbe(
        [[0.1, 0.1, 1.0, 0.5], [1.0, 0.1, 0.1, 0.5], [0, 1.0, 0, 0.5], [0.2, 0.2, 1.0, 0.5]])
    monkeypatch.setattr(ev, "_load_model", lambda p, c, d: (Path(c), model, FakeBackbone))
    monkeypatch.setenv("DEPTHG_CRF_WORKERS", "0")
    m = ev.evaluate(profile, checkpoint=ckpt, device="cpu", crf=True, write=False,
                    progress=False)
    hist = np.asarray(m["unsupervised"]["histogram"])
    assert hist.shape == (4, 3)
    # cluster 3 (blue-ish, like cluster 0) counts only when extra clusters are kept
    assert (hist[3].sum() == 0) == (fidelity == "released")


# ------------------------------------------------------------------ bad input

def test_label_of_another_size_is_one_clear_error_naming_it(tmp_path, monkeypatch):
    from PIL import Image

    from depthg_lib.config import load_profile
    from depthg_lib.data.synthscenes import generate

    generate(tmp_path / "ss", 1, 2, 32, seed=0, progress=False)
    profile = load_profile("test", data_root=str(tmp_path), dataset_dir="ss")
    evalset.open_split(profile, "val")  # sizes agree
    label = sorted((tmp_path / "ss" / "labels" / "val").glob("*.png"))[1]
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(label)
    with pytest.raises(DepthGError, match=rf"label {label} is 32×16 pixels but its image "
                                          rf".*is 32×32"):
        evalset.open_split(profile, "val")
    # a reader without files: the loader checks each pair as it reads it
    small = FakeReader()
    monkeypatch.setattr(small, "load_label", lambda split, name: np.zeros((20, 56), np.uint8))
    loader = evalset.make_loader(profile.replace(num_workers=0), small, "val", ["im0"], 1)
    with pytest.raises(DepthGError, match="is 56×20 pixels but its image im0 is 56×40"):
        next(iter(loader))


def test_evaluation_records_its_inputs_and_skips_done_work(fake_stage, monkeypatch):
    profile, ckpt = fake_stage
    first = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)
    out = Path(first["out_dir"])
    record = json.loads((out / "evaluate.json").read_text())
    assert record["inputs"]["checkpoint"]["digest"] == ev.sha256_file(ckpt)
    assert record["crf"] is False and record["n_images"] == 3

    calls = []
    real = ev.probe_log_probs
    monkeypatch.setattr(ev, "probe_log_probs", lambda *a: calls.append(1) or real(*a))
    again = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)
    assert again["reused"] and not calls  # nothing changed: nothing scored
    assert again["unsupervised"] == first["unsupervised"]
    for key in ("cluster_histogram", "linear_histogram", "matched_histogram"):
        np.testing.assert_array_equal(again["arrays"][key], first["arrays"][key])
    np.testing.assert_array_equal(again["arrays"]["examples"]["cluster"],
                                  first["arrays"]["examples"]["cluster"])
    ckpt.write_bytes(b"another checkpoint")  # trained again: scored again
    assert not ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False).get("reused")
    n = len(calls)
    assert n > 0
    assert not ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False,
                           force=True).get("reused")
    assert len(calls) > n
    two = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False, max_images=2)
    assert not two.get("reused") and two["n_images"] == 2  # other settings: scored afresh


def test_a_reused_evaluation_loads_no_backbone(fake_stage, monkeypatch):
    profile, ckpt = fake_stage
    ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)
    monkeypatch.undo()  # the real _load_model, on a fake checkpoint and backbone
    reader, loads = FakeReader(), []
    monkeypatch.setattr(ev, "open_split", lambda p, split: (reader, reader.names(split)))
    monkeypatch.setattr(ev, "load_checkpoint", lambda *a, **k: _fake_model())
    monkeypatch.setattr(ev, "load_backbone", lambda *a: loads.append(1) or FakeBackbone())
    assert ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False)["reused"]
    assert not loads
    ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False, force=True)
    assert loads == [1]


def test_the_shipped_head_is_evaluated_into_runs_never_into_the_package(tmp_path, monkeypatch):
    from depthg_lib.config import load_profile
    from depthg_lib.data.synthscenes import generate

    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    generate(tmp_path / "ss", 1, 2, 32, seed=0, progress=False)
    profile = load_profile("demo", data_root=str(tmp_path), dataset_dir="ss", eval_res=32,
                           num_workers=0)  # the profile the shipped head was trained with
    shipped = ev.PACKAGE_DIR / "weights" / "depthg_embedded.pt"
    before = {p: p.stat().st_mtime_ns for p in ev.PACKAGE_DIR.rglob("*") if p.is_file()}
    m = ev.evaluate(profile, checkpoint=shipped, device="cpu", progress=False)
    out = tmp_path / "runs" / "demo" / "eval_depthg_embedded"
    assert Path(m["out_dir"]) == out == ev.eval_dir_for(profile, shipped)
    assert (out / "metrics.json").exists() and (out / "depthg_embedded.classes.json").exists()
    after = {p: p.stat().st_mtime_ns for p in ev.PACKAGE_DIR.rglob("*") if p.is_file()
             and "__pycache__" not in p.parts}
    assert after == {p: t for p, t in before.items() if "__pycache__" not in p.parts}


def test_max_images_below_one_is_refused(fake_stage):
    profile, ckpt = fake_stage
    with pytest.raises(SystemExit):
        ev.main(["--profile", "test", "--checkpoint", str(ckpt), "--max-images", "0"])
    with pytest.raises(DepthGError, match="max_images must be at least 1"):
        ev.evaluate(profile, checkpoint=ckpt, device="cpu", max_images=0, progress=False)


def test_missing_checkpoint_hint_names_a_profile_file_that_works(tmp_path):
    import shutil

    from depthg_lib.config import PROFILE_DIR, load_profile

    mine = tmp_path / "mine.yaml"
    shutil.copy(PROFILE_DIR / "test.yaml", mine)
    profile = load_profile(mine)
    with pytest.raises(DepthGError, match=rf"python -m depthg_lib.train --profile {mine}"):
        ev._load_model(profile.replace(name="never-trained"), None, torch.device("cpu"))
