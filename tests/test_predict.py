"""Prediction on arbitrary images: sizes, modes, folders, bad inputs, outputs on disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_evaluate import FakeBackbone, _fake_model

from depthg_lib import predict as pr
from depthg_lib.errors import DepthGError


def _segmenter(assignment=True):
    seg = pr.Segmenter(model=_fake_model(), backbone=FakeBackbone(), checkpoint=Path("fake.pt"),
                       eval_res=32, patch_size=8, n_clusters=3)
    if assignment:
        seg.cluster_to_class = [1, 0, 2]
        seg.class_names = ["red", "blue", "green"]
        seg.class_colors = [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    return seg


@pytest.fixture
def fake_segmenter(monkeypatch):
    seg = _segmenter()
    monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: seg)
    return seg


def _red_blue(h, w):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (200, 30, 30)
    img[:, w // 2:] = (30, 30, 200)
    return img


@pytest.mark.parametrize("hw", [(37, 53), (300, 20), (8, 8), (128, 96)])
def test_working_size_is_patch_multiple_and_keeps_aspect(hw):
    h, w = pr.working_size(*hw, patch=8, target=32)
    assert h % 8 == 0 and w % 8 == 0 and h >= 8 and w >= 8
    assert max(h, w) <= 2 * 32 + 8
    if min(hw) * 4 > max(hw):  # not extreme: aspect within a patch's rounding
        assert abs(h / w - hw[0] / hw[1]) < 0.35


def test_segment_returns_original_size_labels(fake_segmenter):
    for h, w in [(37, 53), (64, 64), (20, 90)]:
        labels = pr.segment(fake_segmenter, _red_blue(h, w))
        assert labels.shape == (h, w) and labels.dtype == np.uint8
        # red → cluster 1, blue → cluster 0 (see the fake cluster probe)
        assert labels[h // 2, 2] == 1 and labels[h // 2, w - 3] == 0
    linear = pr.segment(fake_segmenter, _red_blue(24, 40), probe="linear")
    assert linear[12, 1] == 0 and linear[12, 38] == 1


def test_segment_refuses_what_is_not_rgb(fake_segmenter):
    with pytest.raises(DepthGError, match="RGB uint8 image"):
        pr.segment(fake_segmenter, np.zeros((8, 8), np.uint8))
    with pytest.raises(DepthGError, match="RGB uint8 image"):
        pr.segment(fake_segmenter, np.zeros((8, 8, 3), np.float32))


def test_predict_files_writes_outputs_and_skips_bad_ones(fake_segmenter, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_red_blue(30, 50)).save(src / "a.jpg")
    Image.fromarray(_red_blue(40, 40)).convert("L").save(src / "b.png")  # greyscale
    Image.fromarray(_red_blue(40, 40)).convert("RGBA").save(src / "c.png")
    (src / "broken.png").write_bytes(b"not an image at all")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    report = pr.predict_files([src, tmp_path / "missing.jpg"], out, progress=False)
    assert len(report.written) == 3
    skipped = dict(report.skipped)
    assert "does not exist" in skipped[str(tmp_path / "missing.jpg")]
    assert "not a readable image" in skipped[str(src / "broken.png")]
    for stem, (h, w) in {"a": (30, 50), "b": (40, 40), "c": (40, 40)}.items():
        label = np.asarray(Image.open(out / f"{stem}_label.png"))
        ids = np.asarray(Image.open(out / f"{stem}_ids.png"))
        assert label.shape == (h, w, 3) and ids.shape == (h, w)
        assert (out / f"{stem}_overlay.png").exists()
    # cluster colours are those of the matched classes: red half red, blue half blue
    a = np.asarray(Image.open(out / "a_label.png"))
    assert tuple(a[15, 2]) == (255, 0, 0) and tuple(a[15, 48]) == (0, 0, 255)
    legend = json.loads((out / "legend.json").read_text())
    assert legend["entries"][0]["name"] == "cluster 0 → blue"
    assert (out / "legend.png").stat().st_size > 500
    assert "skipped 2" in str(report)


def test_legend_without_matching_names_clusters_only(monkeypatch, tmp_path):
    seg = _segmenter(assignment=False)
    monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: seg)
    Image.fromarray(_red_blue(16, 16)).save(tmp_path / "x.png")
    pr.predict_files([tmp_path / "x.png"], tmp_path / "out", progress=False)
    legend = json.loads((tmp_path / "out" / "legend.json").read_text())
    names = [e["name"] for e in legend["entries"]]
    assert names == ["cluster 0", "cluster 1", "cluster 2"]


def test_bad_inputs_are_one_clear_error(fake_segmenter, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DepthGError, match="holds no images"):
        pr.predict_files([empty], tmp_path / "out", progress=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DepthGError, match="no image could be segmented.*bad.jpg"):
        pr.predict_files([bad], tmp_path / "out", progress=False)


def test_missing_default_checkpoint_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr(pr, "DEFAULT_CHECKPOINT", tmp_path / "depthg_embedded.pt")
    with pytest.raises(DepthGError, match="python -m depthg_lib.train --profile demo"):
        pr.load_segmenter(None)


def test_cli_reports_skips(fake_segmenter, tmp_path, capsys):
    Image.fromarray(_red_blue(16, 24)).save(tmp_path / "x.png")
    assert pr.main([str(tmp_path / "x.png"), str(tmp_path / "nope.png"),
                    "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "segmented 1 image" in out and "nope.png: does not exist" in out


def test_segment_with_crf(fake_segmenter):
    pytest.importorskip("pydensecrf.densecrf")
    labels = pr.segment(fake_segmenter, _red_blue(24, 40), crf=True)
    assert labels.shape == (24, 40) and labels[12, 1] == 1 and labels[12, 38] == 0


def test_segmenter_palette_uses_class_colours():
    pal = _segmenter().palette()
    assert pal.shape == (3, 3)
    assert tuple(pal[0]) == (0, 0, 255) and tuple(pal[1]) == (255, 0, 0)
    assert torch.is_tensor(next(_segmenter().model.head.parameters()))


# ------------------------------------------------------------------ with the real modules

def _real_checkpoint(path: Path, profile):
    """A checkpoint in train.py's format with an untrained head on the `embedded-random` ViT."""
    import dataclasses

    from depthg_lib.checkpoint import CHECKPOINT_FORMAT
    from depthg_lib.models import DepthGModel, load_backbone

    backbone = load_backbone(profile.backbone)
    torch.manual_seed(0)
    model = DepthGModel(backbone.dim, profile.dim, profile.n_classes)
    state = {"format": CHECKPOINT_FORMAT, "profile": dataclasses.asdict(profile), "step": 0,
             "seed": 0, "backbone": profile.backbone, "backbone_dim": backbone.dim,
             "patch_size": backbone.patch_size, "code_dim": profile.dim,
             "n_classes": profile.n_classes, "extra_clusters": 0,
             "head": model.head.state_dict(), "cluster_probe": model.cluster_probe.state_dict(),
             "linear_probe": model.linear_probe.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from depthg_lib.config import load_profile
    from depthg_lib.data import synthscenes

    root = tmp_path_factory.mktemp("real")
    profile = load_profile("test", data_root=str(root), dataset_dir="scenes", eval_res=32,
                           num_workers=0)
    synthscenes.generate(root / "scenes", n_train=1, n_val=3, size=40, seed=1, progress=False)
    return profile, _real_checkpoint(root / "run" / "checkpoints" / "final.pt", profile)


def test_real_checkpoint_predicts_any_size(real_run, tmp_path):
    profile, ckpt = real_run
    seg = pr.load_segmenter(ckpt, "cpu")
    assert seg.patch_size == 8 and seg.n_clusters == profile.n_classes
    maps = [pr.segment(seg, np.zeros((19, 45, 3), np.uint8)),
            pr.segment(seg, np.full((64, 30, 3), 200, np.uint8), probe="linear")]
    assert [m.shape for m in maps] == [(19, 45), (64, 30)]
    assert all(m.max() < profile.n_classes for m in maps)


def test_real_checkpoint_for_another_profile_is_refused(real_run):
    _, ckpt = real_run
    with pytest.raises(DepthGError, match="does not fit profile 'demo'.*code_dim"):
        pr.load_segmenter(ckpt, "cpu", profile="demo")


def test_real_evaluation_then_prediction_names_clusters(real_run, tmp_path):
    from depthg_lib import evaluate as ev

    profile, ckpt = real_run
    m = ev.evaluate(profile, checkpoint=ckpt, device="cpu", progress=False,
                    out_dir=tmp_path / "eval")
    assert m["n_images"] == 3 and 0 <= m["unsupervised"]["miou"] <= 100
    assert (tmp_path / "eval" / "metrics.json").exists()
    seg = pr.load_segmenter(ckpt, "cpu")  # now reads the matching evaluate stored
    assert seg.cluster_to_class == m["unsupervised"]["cluster_to_class"]
    assert any("→" in name for name in seg.cluster_names())


def test_exif_orientation_is_applied_before_segmenting(fake_segmenter, tmp_path):
    stored = _red_blue(30, 50)  # as the camera stored it: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the viewer turns it 90° clockwise
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = np.rot90(stored, k=-1)  # (50, 30): red on top, blue at the bottom
    pr.predict_files([tmp_path / "phone.jpg"], tmp_path / "out", progress=False)
    ids = np.asarray(Image.open(tmp_path / "out" / "phone_ids.png"))
    assert ids.shape == (50, 30)
    np.testing.assert_array_equal(ids, pr.segment(fake_segmenter, upright))


def test_legend_of_earlier_outputs_is_never_overwritten(monkeypatch, tmp_path):
    Image.fromarray(_red_blue(16, 16)).save(tmp_path / "a.png")
    Image.fromarray(_red_blue(16, 24)).save(tmp_path / "b.png")
    out = tmp_path / "out"
    first = _segmenter(assignment=True)
    monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: first)
    pr.predict_files([tmp_path / "a.png"], out, progress=False)
    pr.predict_files([tmp_path / "b.png"], out, progress=False)  # same legend: adds to it
    assert json.loads((out / "legend.json").read_text())["outputs"] == ["a", "b"]
    before = (out / "legend.json").read_text()
    other = _segmenter(assignment=False)  # another matching: other names for the colours
    monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: other)
    with pytest.raises(DepthGError, match=r"legend\.json describes .*--force"):
        pr.predict_files([tmp_path / "b.png"], out, progress=False)
    assert (out / "legend.json").read_text() == before and (out / "a_label.png").exists()
    with pytest.raises(DepthGError, match="another probe"):
        monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: first)
        pr.predict_files([tmp_path / "b.png"], out, probe="linear", progress=False)
    monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: other)
    pr.predict_files([tmp_path / "b.png"], out, progress=False, force=True)
    legend = json.loads((out / "legend.json").read_text())
    assert legend["outputs"] == ["b"] and legend["entries"][0]["name"] == "cluster 0"
    assert not (out / "a_label.png").exists()  # described by the old legend only: removed


def test_skipped_sub_folders_are_listed(fake_segmenter, tmp_path):
    src = tmp_path / "in"
    (src / "holiday").mkdir(parents=True)
    Image.fromarray(_red_blue(16, 16)).save(src / "a.png")
    Image.fromarray(_red_blue(16, 16)).save(src / "holiday" / "b.png")
    report = pr.predict_files([src], src / "out", progress=False)
    assert len(report.written) == 1
    assert "not searched" in dict(report.skipped)[str(src / "holiday")]
    assert str(src / "out") not in dict(report.skipped)  # the output folder is not news
    assert "holiday" in str(report)


def test_out_that_is_a_file_is_one_line(fake_segmenter, tmp_path, capsys):
    from depthg_lib.errors import run_cli

    Image.fromarray(_red_blue(16, 16)).save(tmp_path / "a.png")
    (tmp_path / "out.txt").write_text("")
    with pytest.raises(SystemExit):
        run_cli(pr.main, [str(tmp_path / "a.png"), "--out", str(tmp_path / "out.txt")])
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and err.count("\n") == 1
