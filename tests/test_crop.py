"""Five-crop: golden boxes, torchvision equality, the stage's output layout and CropReader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fakes_data import make_directory, make_synth, write_depth
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.functional import five_crop

from depthg_lib.config import load_profile
from depthg_lib.crop import (
    CropReader,
    crop_array,
    dominant_class_share,
    five_crop_boxes,
    main,
    run_crop_stage,
)
from depthg_lib.data import reader_for_profile
from depthg_lib.errors import DepthGError

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.mark.parametrize("name", ["g_five_crop_60x80", "g_five_crop_61x83"])
def test_boxes_match_golden(name):
    golden = np.load(GOLDEN / f"{name}.npz")
    image = golden["image"][0]
    boxes = five_crop_boxes(*image.shape, ratio=0.5)
    assert [b[2:] for b in boxes] == [tuple(golden["size"])] * 5
    for k, box in enumerate(boxes):
        np.testing.assert_array_equal(crop_array(image, box), golden["crops"][k, 0])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 120), st.integers(2, 120),
       st.sampled_from([0.5, 0.25, 0.3, 0.6, 0.75, 0.9, 1.0]))
def test_boxes_match_torchvision(height, width, ratio):
    image = torch.arange(height * width).reshape(1, height, width)
    size = (int(height * ratio), int(width * ratio))
    if min(size) < 1:
        return  # an empty crop: five_crop_boxes refuses it (tested below)
    expected = five_crop(image, list(size))
    for box, crop in zip(five_crop_boxes(height, width, ratio), expected):
        np.testing.assert_array_equal(crop_array(image[0].numpy(), box), crop[0].numpy())


def test_empty_crop_is_refused():
    from depthg_lib.errors import DepthGError

    with pytest.raises(DepthGError, match="empty crop"):
        five_crop_boxes(1, 40, 0.5)


def test_dominant_class_share():
    label = np.array([[0, 0, 1], [255, 255, 0]], dtype=np.uint8)
    assert dominant_class_share(label) == pytest.approx(3 / 4)
    assert np.isnan(dominant_class_share(np.full((2, 2), 255, np.uint8)))


def _synth_profile(tmp_path, size=(24, 32), n_train=3, n_val=2, depth=True):
    profile = load_profile("test", data_root=str(tmp_path))
    make_synth(profile.paths.dataset_dir, n_train=n_train, n_val=n_val, size=size)
    if depth:
        write_depth(reader_for_profile(profile))
    return profile


def test_stage_layout_and_round_trip(tmp_path):
    profile = _synth_profile(tmp_path)
    reader = reader_for_profile(profile)
    out = run_crop_stage(profile, split="all", progress=False)
    assert out == tmp_path / "cropped" / "synthscenes_test_five_crop_0.5"
    assert (out / "crop.json").is_file()
    for split in ("train", "val"):
        names = reader.names(split)
        crops = CropReader(out, split)
        assert len(crops) == 5 * len(names)
        assert len(list((out / "img" / split).glob("*.jpg"))) == 5 * len(names)
        assert (out / f"{split}_names.txt").read_text().splitlines()[7] == f"7\t{names[1]}"
        for n in range(len(crops)):
            name, k = crops.source(n)
            assert name == names[n // 5] and k == n % 5
            box = five_crop_boxes(24, 32)[k]
            image, label, depth = crops.load(n)
            assert image.shape == (12, 16, 3) and label.dtype == np.uint8
            assert depth.dtype == np.uint16
            np.testing.assert_array_equal(label, crop_array(reader.load_label(split, name), box))
            src_depth = np.asarray(Image.open(reader.depth_path(split, name)))
            np.testing.assert_array_equal(depth, crop_array(src_depth, box))
            diff = np.abs(image.astype(int) - crop_array(reader.load_image(split, name), box))
            assert diff.mean() < 2  # JPEG quality 95, twice


def test_labels_are_stored_plus_one(tmp_path):
    profile = _synth_profile(tmp_path, n_train=1, n_val=0)
    out = run_crop_stage(profile, progress=False)
    stored = np.asarray(Image.open(out / "label" / "train" / "0.png"))
    source = reader_for_profile(profile).load_label("train", "train_00000")[:12, :16]
    np.testing.assert_array_equal(stored, np.where(source == 255, 0, source + 1))
    assert (stored == 0).any()  # the fake label has ignore pixels in its top-left corner
    assert Image.open(out / "depth" / "train" / "0_zoedepth.png").mode.startswith("I;16")
    assert (out / "train_names.txt").exists()


def test_directory_dataset_crops_without_labels(tmp_path):
    profile = load_profile("test", data_root=str(tmp_path), dataset="directory",
                           dataset_dir="mine", depth_backend="synth")
    make_directory(profile.paths.dataset_dir)
    write_depth(reader_for_profile(profile))
    out = run_crop_stage(profile, split="all", progress=False)
    crops = CropReader(out, "train")
    assert len(crops) == 20 and not crops.has_labels
    image, label, depth = crops.load(0)  # "b": 20×30
    assert image.shape == (10, 15, 3) and (label == 255).all() and depth.shape == (10, 15)
    assert not (out / "label").exists()


def test_crop_cli(tmp_path, capsys, monkeypatch):
    profile = _synth_profile(tmp_path, n_train=2, n_val=1)
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: test\ndata_root: {tmp_path}\n")
    assert main(["--profile", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train: 10 crops" in out and "val: 5 crops" in out
    assert len(CropReader.from_profile(profile, "val")) == 5


def test_crop_reader_bounds_and_repr(tmp_path):
    profile = _synth_profile(tmp_path, n_train=1, n_val=0)
    crops = CropReader(run_crop_stage(profile, progress=False), "train")
    with pytest.raises(IndexError):
        crops.load(5)
    assert "5 crops" in repr(crops)


def test_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from depthg_lib.viz import label_palette
    from depthg_lib.viz.data import dominant_share_figure, show_crops, show_five_crop

    profile = _synth_profile(tmp_path, n_train=2, n_val=0)
    reader = reader_for_profile(profile)
    image = reader.load_image("train", "train_00000")
    boxes = five_crop_boxes(*image.shape[:2])
    palette = label_palette(reader.n_classes)
    fig = show_five_crop(image, reader.load_label("train", "train_00000"), None, boxes, palette)
    assert len(fig.axes) == 18 and len(fig.axes[0].patches) == 5  # the five boxes
    crops = CropReader(run_crop_stage(profile, progress=False), "train")
    assert len(show_crops(crops, [0, 4, 9], palette).axes) == 9 + 1  # + the depth colour bar
    assert len(dominant_share_figure([0.5, 0.6], [0.9, 1.0]).axes) == 1
    matplotlib.pyplot.close("all")


def test_a_disk_too_small_for_the_crops_stops_the_stage_early_and_it_resumes(tmp_path, disk_free):
    """After the first images, their space is projected over the rest: a disk that cannot hold
    it stops the stage with one error naming the folder, before it fills, and the same command
    finishes once there is room."""
    profile = _synth_profile(tmp_path, n_train=6, n_val=0)
    disk_free(100)  # the first 2 images' crops took some kB: the other 4 need more than 100 bytes
    with pytest.raises(DepthGError, match=r"the remaining 4 train images to crop need about "
                                          r"0\.0 GB and 0\.0 GB is free there"):
        run_crop_stage(profile, progress=False)
    disk_free(10**12)
    out = run_crop_stage(profile, progress=False)
    assert len(CropReader(out, "train")) == 5 * 6
