"""Bad input: every learner-made mistake with data gives a DepthGError that says what to do.

Readers and five-crop (data developer's part): missing root or split, corrupt and truncated
images, odd image modes, image/label mismatches, labels out of range, odd sizes, stages run
out of order, re-runs and interrupted runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fakes_data import make_cityscapes, make_coco, make_potsdam, make_synth, write_depth
from PIL import Image

from depthg_lib import crop as crop_module
from depthg_lib.config import load_profile
from depthg_lib.crop import CropReader, crop_array, five_crop_boxes, run_crop_stage
from depthg_lib.data import get_reader, reader_for_profile
from depthg_lib.data.__main__ import main as data_main
from depthg_lib.errors import DepthGError

# -- readers ------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["synthscenes", "cocostuff27", "cityscapes", "potsdam",
                                     "directory"])
def test_missing_root_names_path_and_check_command(tmp_path, dataset):
    root = tmp_path / "nowhere"
    with pytest.raises(DepthGError) as err:
        get_reader(dataset, root).names("train")
    assert str(root) in str(err.value)
    assert f"python -m depthg_lib.data check --dataset {dataset} --root {root}" in str(err.value)


@pytest.mark.parametrize("dataset,maker,removed", [
    ("synthscenes", make_synth, "imgs/val"),
    ("cocostuff27", make_coco, "curated/val2017/Coco164kFull_Stuff_Coarse_7.txt"),
    ("cityscapes", make_cityscapes, "leftImg8bit/val"),
    ("potsdam", make_potsdam, "labelled_test.txt"),
])
def test_missing_split_names_expected_path(tmp_path, dataset, maker, removed):
    import shutil

    root = maker(tmp_path / dataset)
    target = root / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    reader = get_reader(dataset, root)
    with pytest.raises(DepthGError) as err:
        reader.names("val")
    assert str(target) in str(err.value) and "depthg_lib.data check" in str(err.value)
    report = reader.check()
    assert report.usable and report.splits["val"].error  # train alone still trains
    assert "MISSING" in str(report)


def test_unreadable_synthscenes_class_table_names_the_file(tmp_path):
    root = make_synth(tmp_path / "s", n_train=1, n_val=1)
    (root / "synthscenes.json").write_text('{"classes": [{"colour": [1, 2, 3]}]}')
    reader = get_reader("synthscenes", root)
    with pytest.raises(DepthGError, match="synthscenes.json is not a SynthScenes class table.*"
                                          "re-generate"):
        _ = reader.class_names


def test_unknown_split(tmp_path):
    with pytest.raises(DepthGError, match="splits are train, val"):
        get_reader("synthscenes", make_synth(tmp_path / "s")).names("test")


def test_corrupt_and_truncated_images_name_the_file(tmp_path):
    root = make_synth(tmp_path / "s", size=(64, 64))
    reader = get_reader("synthscenes", root)
    garbage = reader.image_path("train", "train_00000")
    garbage.write_bytes(b"this is not a jpeg at all")
    truncated = reader.image_path("train", "train_00001")
    truncated.write_bytes(truncated.read_bytes()[:300])
    for name, path in (("train_00000", garbage), ("train_00001", truncated)):
        with pytest.raises(DepthGError) as err:
            reader.load_image("train", name)
        # the reader is used by stages without --skip-bad too (kNN, evaluate): no such hint
        assert str(path) in str(err.value) and "--skip-bad" not in str(err.value)
    report = reader.check(deep=True)
    assert not report.usable and len(report.splits["train"].bad) == 2


def test_corrupt_mat_file_names_it(tmp_path):
    root = make_potsdam(tmp_path / "p")
    (root / "imgs" / "1.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    scipy.io.savemat(root / "gt" / "2.mat", {"label": np.zeros((4, 4))})
    reader = get_reader("potsdam", root)
    with pytest.raises(DepthGError, match=r"1\.mat"):
        reader.load_image("train", "1")
    with pytest.raises(DepthGError, match=r"2\.mat has no array 'gt' \(found: label\)"):
        reader.load_label("train", "2")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA", "CMYK"])
def test_any_image_mode_becomes_rgb_uint8(tmp_path, mode):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16))
    elif mode == "P":
        img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        img = rgb.convert(mode)
    folder = tmp_path / "mine"
    folder.mkdir()
    img.save(folder / ("x.jpg" if mode == "CMYK" else "x.png"))
    image = get_reader("directory", folder).load_image("train", "x")
    assert image.dtype == np.uint8 and image.shape == (10, 12, 3)
    if mode == "P":
        np.testing.assert_array_equal(image, np.asarray(img.convert("RGB")))


def test_image_label_mismatch_lists_unmatched_names(tmp_path, capsys):
    root = make_synth(tmp_path / "s", n_train=8, n_val=1)
    for i in (2, 5, 6):
        (root / "labels" / "train" / f"train_{i:05d}.png").unlink()
    extra = np.zeros((24, 32), np.uint8)
    Image.fromarray(extra).save(root / "labels" / "train" / "orphan.png")
    report = get_reader("synthscenes", root).check()
    train = report.splits["train"]
    assert (train.images, train.labels, len(train.without_label)) == (8, 6, 3)
    assert train.without_label == ["train_00002", "train_00005", "train_00006"]
    assert train.label_only == ["orphan"] and not report.usable
    assert data_main(["check", "--dataset", "synthscenes", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "images without a label: train_00002, train_00005, train_00006" in out
    assert "labels without an image: orphan" in out


def test_check_lists_curated_ids_whose_files_are_absent(tmp_path):
    root = make_coco(tmp_path / "c")
    (root / "images" / "train2017" / "000000000025.jpg").unlink()
    report = get_reader("cocostuff27", root).check()
    train = report.splits["train"]
    assert train.images == 2 and train.missing_images == ["000000000025"]
    assert not report.usable and "000000000025.jpg" in str(report)


@pytest.mark.parametrize("dataset,maker,value", [
    ("synthscenes", make_synth, 12), ("cocostuff27", make_coco, 200),
    ("cityscapes", make_cityscapes, 40), ("potsdam", make_potsdam, 6),
])
def test_label_out_of_range_names_file_and_value(tmp_path, dataset, maker, value):
    reader = get_reader(dataset, maker(tmp_path / dataset))
    name = reader.names("train")[0]
    path = reader.label_path("train", name)
    if dataset == "potsdam":
        gt = scipy.io.loadmat(path)["gt"]
        gt[3, 4] = value
        scipy.io.savemat(path, {"gt": gt})
    else:
        label = np.asarray(Image.open(path)).copy()
        label[3, 4] = value
        Image.fromarray(label).save(path)
    with pytest.raises(DepthGError) as err:
        reader.load_label("train", name)
    assert str(path) in str(err.value) and str(value) in str(err.value)


def test_rgb_label_is_refused(tmp_path):
    root = make_synth(tmp_path / "s")
    path = root / "labels" / "train" / "train_00000.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(path)
    with pytest.raises(DepthGError, match="one channel"):
        get_reader("synthscenes", root).load_label("train", "train_00000")


def test_clashing_names_in_a_directory(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for suffix in (".png", ".jpg"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"same{suffix}")
    with pytest.raises(DepthGError, match="share a name"):
        get_reader("directory", folder).names("train")


# -- five-crop --------------------------------------------------------------------------


def _profile(tmp_path, size=(24, 32), n_train=4, n_val=2, depth=True):
    profile = load_profile("test", data_root=str(tmp_path))
    make_synth(profile.paths.dataset_dir, n_train=n_train, n_val=n_val, size=size)
    if depth:
        write_depth(reader_for_profile(profile))
    return profile


def test_odd_size_61x83(tmp_path):
    profile = _profile(tmp_path, size=(61, 83), n_train=1, n_val=0)
    reader = reader_for_profile(profile)
    crops = CropReader(run_crop_stage(profile, progress=False), "train")
    golden = np.load(Path(__file__).parent / "data" / "golden" / "g_five_crop_61x83.npz")
    label = reader.load_label("train", "train_00000")
    for k, box in enumerate(five_crop_boxes(61, 83)):
        image, crop_label, depth = crops.load(k)
        assert image.shape == (30, 41, 3) and depth.shape == (30, 41)
        np.testing.assert_array_equal(crop_label, crop_array(label, box))
        np.testing.assert_array_equal(crop_array(golden["image"][0], box), golden["crops"][k, 0])


def test_crop_before_depth_names_the_depth_command(tmp_path):
    profile = _profile(tmp_path, depth=False)
    with pytest.raises(DepthGError) as err:
        run_crop_stage(profile, progress=False)
    assert "python -m depthg_lib.depth --profile test" in str(err.value)
    assert not (profile.paths.crop_dir / "img").exists()


def test_crop_reader_before_crop_names_the_crop_command(tmp_path):
    profile = load_profile("test", data_root=str(tmp_path))
    with pytest.raises(DepthGError, match="python -m depthg_lib.crop --profile test"):
        CropReader.from_profile(profile, "train")


def test_crop_without_dataset_names_check_command(tmp_path):
    profile = load_profile("test", data_root=str(tmp_path))
    with pytest.raises(DepthGError, match="depthg_lib.data check --dataset synthscenes"):
        run_crop_stage(profile, progress=False)


def test_rerun_skips_finished_work(tmp_path, monkeypatch):
    profile = _profile(tmp_path)
    out = run_crop_stage(profile, split="all", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    calls = []
    monkeypatch.setattr(crop_module, "_crop_one", lambda *a: calls.append(a))
    run_crop_stage(profile, split="all", progress=False)
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
    # a deleted crop is made again, under the same number
    (out / "depth" / "train" / "7_zoedepth.png").unlink()
    monkeypatch.undo()
    run_crop_stage(profile, progress=False)
    assert (out / "depth" / "train" / "7_zoedepth.png").exists()


def test_interrupted_run_resumes_with_same_numbering(tmp_path, monkeypatch):
    profile = _profile(tmp_path, n_train=6)
    real = crop_module._crop_one
    calls = []

    def flaky(reader, crop_dir, split, name, index, ratio):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(name)
        real(reader, crop_dir, split, name, index, ratio)

    monkeypatch.setattr(crop_module, "_crop_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_crop_stage(profile, progress=False)
    out = profile.paths.crop_dir
    assert not (out / "train_names.txt").exists()
    with pytest.raises(DepthGError, match="no finished train split"):
        CropReader(out, "train")
    monkeypatch.setattr(crop_module, "_crop_one", real)
    redone = []
    monkeypatch.setattr(crop_module, "_crop_one", lambda *a: (redone.append(a[3]), real(*a)))
    run_crop_stage(profile, progress=False)
    assert redone == ["train_00003", "train_00004", "train_00005"]
    crops = CropReader(out, "train")
    assert len(crops) == 30 and crops.source(17) == ("train_00003", 2)


def test_other_settings_refused_unless_force(tmp_path):
    import json

    profile = _profile(tmp_path, n_train=2, n_val=0)
    out = run_crop_stage(profile, progress=False)
    record = json.loads((out / "crop.json").read_text())
    record["jpeg_quality"] = 75  # as if an older version had written these crops
    (out / "crop.json").write_text(json.dumps(record))
    with pytest.raises(DepthGError, match="--force"):
        run_crop_stage(profile, progress=False)
    run_crop_stage(profile, force=True, progress=False)
    assert json.loads((out / "crop.json").read_text())["jpeg_quality"] == 95
    assert len(CropReader(out, "train")) == 10


def test_crop_names_a_bad_image_and_leaves_out_what_the_depth_stage_left_out(tmp_path):
    profile = _profile(tmp_path, n_train=4, n_val=0)
    reader = reader_for_profile(profile)
    reader.image_path("train", "train_00001").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DepthGError, match="train_00001.jpg.*replace or delete"):
        run_crop_stage(profile, progress=False)
    reader.depth_path("train", "train_00001").unlink()  # as `depth --skip-bad` leaves it
    with pytest.raises(DepthGError, match="needs depth maps first"):
        run_crop_stage(profile, progress=False)
    (reader.depth_record_dir() / "depth_skipped.json").write_text('["train/train_00001"]')
    out = run_crop_stage(profile, force=True, progress=False)
    crops = CropReader(out, "train")
    assert len(crops) == 15
    assert [crops.source(n)[0] for n in (0, 5, 10)] == ["train_00000", "train_00002",
                                                          "train_00003"]
    assert not (out / "img" / "train" / "15.jpg").exists()


def test_depth_of_another_size_is_refused(tmp_path):
    profile = _profile(tmp_path, n_train=1, n_val=0)
    reader = reader_for_profile(profile)
    path = reader.depth_path("train", "train_00000")
    Image.fromarray(np.zeros((10, 10), np.uint16)).save(path)
    with pytest.raises(DepthGError, match=r"10×10 but its image .* is 24×32"):
        run_crop_stage(profile, progress=False)


def test_removed_source_images_need_force(tmp_path):
    profile = _profile(tmp_path, n_train=3, n_val=0)
    run_crop_stage(profile, progress=False)
    reader = reader_for_profile(profile)
    reader.image_path("train", "train_00002").unlink()
    with pytest.raises(DepthGError, match=r"train images in .* \(3 files then, 2 now\).*"
                                          r"depthg_lib\.crop --profile test --split train --force"):
        run_crop_stage(profile, progress=False)
    out = run_crop_stage(profile, force=True, progress=False)
    assert len(CropReader(out, "train")) == 10
    assert not (out / "img" / "train" / "10.jpg").exists()  # strays of the longer run removed
