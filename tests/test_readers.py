"""Dataset readers: every layout read through the common interface (docs/method.md §1, §11)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from fakes_data import (
    CITY_NAMES,
    COCO_IDS,
    POTSDAM_IDS,
    make_cityscapes,
    make_coco,
    make_directory,
    make_potsdam,
    make_synth,
    write_depth,
)
from PIL import Image

from depthg_lib.config import REPO_ROOT
from depthg_lib.data import READERS, get_reader
from depthg_lib.data.__main__ import main as data_main
from depthg_lib.data.readers import fine_to_coarse
from depthg_lib.errors import DepthGError

MAKERS = {"synthscenes": make_synth, "cocostuff27": make_coco, "cityscapes": make_cityscapes,
          "potsdam": make_potsdam, "directory": make_directory}


@pytest.mark.parametrize("dataset", sorted(MAKERS))
def test_every_reader_reads_its_layout(tmp_path, dataset):
    reader = get_reader(dataset, MAKERS[dataset](tmp_path / dataset))
    assert reader.name == dataset and reader.root == tmp_path / dataset
    assert len(reader.class_names) == reader.n_classes
    for split in reader.splits:
        names = reader.names(split)
        assert names == sorted(names) and names
        for name in names:
            image = reader.load_image(split, name)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            label = reader.load_label(split, name)
            if reader.has_labels:
                assert label.dtype == np.uint8 and label.shape == image.shape[:2]
                ok = (label < reader.n_classes) | (label == 255)
                assert ok.all()
            else:
                assert label is None
    assert write_depth(reader) == sum(len(reader.names(s)) for s in reader.splits)
    report = reader.check()
    assert report.usable, str(report)
    assert all(r.depth == r.images for r in report.splits.values())
    assert "<root>/" in reader.tree


def test_synthscenes_class_table_and_gt_depth(tmp_path):
    root = make_synth(tmp_path / "s", n_train=2, n_val=1)
    reader = get_reader("synthscenes", root)
    assert reader.n_classes == 12 and reader.class_names[3] == "class3"
    assert reader.class_colors[1] == (20, 100, 190)
    depth = reader.load_gt_depth("train", "train_00001")
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, np.load(root / "depth_gt/train/train_00001.npy"))
    assert reader.depth_path("val", "val_00000") == root / "depth/val/val_00000.png"
    assert get_reader("cocostuff27", tmp_path).load_gt_depth("train", "x") is None


def test_synthscenes_from_the_generator(tmp_path):
    from depthg_lib.data import synthscenes

    root = synthscenes.generate(tmp_path / "g", n_train=2, n_val=1, size=32, seed=0,
                                progress=False)
    reader = get_reader("synthscenes", root)
    assert reader.class_names == synthscenes.CLASS_NAMES
    assert reader.names("train") == ["train_00000", "train_00001"]
    label = reader.load_label("train", "train_00000")
    assert label.shape == (32, 32) and label.max() < synthscenes.N_CLASSES
    assert reader.load_gt_depth("val", "val_00000").shape == (32, 32)


def test_cocostuff_maps_fine_ids_to_27_coarse(tmp_path):
    root = make_coco(tmp_path / "coco")
    reader = get_reader("cocostuff27", root)
    assert reader.names("train") == sorted(COCO_IDS["train"])  # the unlisted image is not read
    fine = np.asarray(Image.open(root / "annotations/train2017/000000000025.png"))
    table = json.loads((REPO_ROOT / "depthg_lib/data/cocostuff27.json").read_text())
    expected = np.full(256, 255)
    for k, v in table["fine_to_coarse"].items():
        expected[int(k)] = v
    np.testing.assert_array_equal(reader.load_label("train", "000000000025"), expected[fine])
    mapping = fine_to_coarse()
    assert mapping[0] == 9 and reader.class_names[9] == "person"  # person
    assert mapping[156] == 23 and reader.class_names[23] == "sky"  # sky-other
    assert len(set(reader.class_names)) == 27
    assert reader.depth_path("val", "7") == root / "depth/val2017/7_zoedepth.png"
    assert reader.image_path("val", "7") == root / "images/val2017/7.jpg"


def test_shipped_cocostuff_table_is_the_shared_one():
    shipped = REPO_ROOT / "depthg_lib/data/cocostuff27.json"
    table = json.loads(shipped.read_text())["fine_to_coarse"]
    assert sorted(map(int, table)) == list(range(182))
    assert set(table.values()) == set(range(27))


def test_cityscapes_label_id_minus_7(tmp_path):
    root = make_cityscapes(tmp_path / "cs")
    reader = get_reader("cityscapes", root)
    assert reader.names("train") == CITY_NAMES["train"]
    name = "bochum_000000_000313"
    ids = np.asarray(Image.open(root / f"gtFine/train/bochum/{name}_gtFine_labelIds.png"))
    label = reader.load_label("train", name)
    np.testing.assert_array_equal(label[ids >= 7], ids[ids >= 7] - 7)
    assert (label[ids < 7] == 255).all() and (ids < 7).any()
    assert reader.class_names[0] == "road" and reader.class_names[26] == "bicycle"
    assert reader.depth_path("val", "lindau_000000_000019") == \
        root / "depth/val/lindau/lindau_000000_000019_zoedepth.png"


def test_potsdam_six_to_three_classes(tmp_path):
    root = make_potsdam(tmp_path / "p")
    reader = get_reader("potsdam", root)
    assert reader.names("val") == sorted(POTSDAM_IDS["val"])
    gt = scipy.io.loadmat(root / "gt/2.mat")["gt"]
    img = scipy.io.loadmat(root / "imgs/2.mat")["img"]
    label = reader.load_label("train", "2")
    lut = np.array([0, 1, 2, 2, 0, 1] + [255] * 250)
    np.testing.assert_array_equal(label, lut[gt])
    assert label[0, 0] == 255
    np.testing.assert_array_equal(reader.load_image("train", "2"), img[..., :3])
    assert reader.depth_path("train", "2") == root / "depth/2_zoedepth.png"


def test_potsdam_float_images(tmp_path):
    root = make_potsdam(tmp_path / "p")
    rgb = np.random.default_rng(0).uniform(0, 1, (20, 20, 4)).astype(np.float32)
    scipy.io.savemat(root / "imgs/1.mat", {"img": rgb})
    image = get_reader("potsdam", root).load_image("train", "1")
    np.testing.assert_array_equal(image, np.round(rgb[..., :3] * 255))


def test_directory_is_recursive_sorted_and_skips_depth(tmp_path):
    root = make_directory(tmp_path / "mine")
    reader = get_reader("directory", root)
    assert reader.splits == ("train",) and not reader.has_labels
    assert reader.names("train") == ["b", "holiday/a", "holiday/deep/alpha", "holiday/grey"]
    assert reader.image_path("train", "holiday/a") == root / "holiday/a.png"
    assert reader.depth_path("train", "holiday/a") == root / "depth/train/holiday/a.png"
    with pytest.raises(DepthGError, match="no val split"):
        reader.names("val")


def test_directory_with_split_folders(tmp_path):
    make_directory(tmp_path / "d" / "train")
    make_directory(tmp_path / "d" / "val", seed=1)
    reader = get_reader("directory", tmp_path / "d")
    assert reader.splits == ("train", "val")
    assert "b" in reader.names("val")


def test_unknown_dataset_names_the_known_ones(tmp_path):
    with pytest.raises(DepthGError, match="cityscapes"):
        get_reader("imagenet", tmp_path)
    assert set(READERS) == {"synthscenes", "cocostuff27", "cityscapes", "potsdam", "directory"}


def test_check_cli_prints_tree_and_counts(tmp_path, capsys):
    root = make_coco(tmp_path / "coco")
    assert data_main(["check", "--dataset", "cocostuff27", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "curated/train2017/Coco164kFull_Stuff_Coarse_7.txt" in out
    assert "3 images, 3 labels, depth 0/3" in out and "verdict: usable" in out
    assert data_main(["check", "--dataset", "potsdam", "--root", str(tmp_path / "no")]) == 1
    assert "does not exist" in capsys.readouterr().out


def test_check_cli_as_a_module(tmp_path):
    root = make_synth(tmp_path / "s", n_train=0, n_val=2)
    (root / "imgs" / "train").mkdir()
    cmd = [sys.executable, "-m", "depthg_lib.data", "check", "--dataset", "synthscenes",
           "--root", str(root)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr  # an empty train split is unusable
    assert "2 images, 2 labels" in done.stdout and "split train: no images in" in done.stdout
    assert "verdict: NOT usable" in done.stdout


def test_wide_label_value_names_the_file(tmp_path):
    """A 16-bit label with an id past 255 is refused, not clipped to ignore."""
    root = make_synth(tmp_path / "s", n_train=1, n_val=1)
    path = root / "labels/train/train_00000.png"
    wide = np.asarray(Image.open(path)).astype(np.uint16)
    wide[0, 0] = 300
    Image.fromarray(wide).save(path)
    with pytest.raises(DepthGError, match=r"train_00000\.png holds value 300"):
        get_reader("synthscenes", root).load_label("train", "train_00000")
