"""Each stage checks the whole chain it consumes, and a refused stage leaves no record.

Training reads crops, cut from depth maps, made from images: a forced depth stage with another
backend, or a profile that now names another one, must stop kNN and training too, not only the
crop stage — with the command that fixes it, which then works. A stage refused for a missing
input writes nothing, so the next run after the fix is not refused for "changed inputs". And a
folder of one's own photos without `val/` runs depth, crop and kNN with their defaults.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from depthg_lib import train as T
from depthg_lib.config import load_profile
from depthg_lib.crop import CropReader, crop_array, five_crop_boxes, run_crop_stage
from depthg_lib.data import get_reader, reader_for_profile
from depthg_lib.data.synthscenes import generate
from depthg_lib.depth import run_depth_stage
from depthg_lib.errors import DepthGError
from depthg_lib.knn import run_knn_stage

torch.set_num_threads(1)
SIZE = 32


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate(root / "ss", 3, 1, SIZE, seed=3, progress=False)
    return root / "ss"


@pytest.fixture
def profile(scenes, tmp_path):
    shutil.copytree(scenes, tmp_path / "data" / "ss")
    return load_profile("test").replace(
        data_root=str(tmp_path / "data"), dataset_dir="ss", synth_n_train=3, synth_n_val=1,
        synth_size=SIZE, synth_seed=3, depth_backend="gt", knn_res=16, knn_k=2, knn_store=4,
        backbone="embedded-random", res=16, samples=2, fps_min_samples=2, batch_size=4,
        steps=2, val_every=2, checkpoint_every=2, dim=8, num_workers=0,
        precompute_features=False, val_images=0)


def _depth_of_crops_is_todays(profile, split="train"):
    """Every crop's depth is the box of the depth map there now."""
    reader = reader_for_profile(profile)
    crops = CropReader.from_profile(profile, split)
    for n in range(len(crops)):
        name, k = crops.source(n)
        depth = np.asarray(Image.open(reader.depth_path(split, name)))
        box = five_crop_boxes(*depth.shape, profile.crop_ratio)[k]
        np.testing.assert_array_equal(crops.load(n)[2], crop_array(depth, box))


# -- a refused stage writes no record ----------------------------------------------------------

def test_crop_before_depth_is_refused_without_a_record_then_crop_works(profile):
    with pytest.raises(DepthGError, match="needs depth maps first.*depthg_lib.depth --profile"):
        run_crop_stage(profile, split="all", progress=False)
    assert not (profile.paths.crop_dir / "crop.json").exists()
    run_depth_stage(profile, progress=False)
    run_crop_stage(profile, split="all", progress=False)  # no --force needed
    _depth_of_crops_is_todays(profile)


# -- crops ← depth ← images, checked by every stage that reads crops ---------------------------

def test_forced_depth_with_another_backend_stops_knn_and_training(profile, tmp_path):
    run_depth_stage(profile, progress=False)
    run_crop_stage(profile, split="all", progress=False)
    run_knn_stage(profile, device="cpu", progress=False)
    synth = profile.replace(depth_backend="synth", depth_model="random")
    run_depth_stage(synth, force=True, progress=False)
    fix = "python -m depthg_lib.crop --profile test --force"
    with pytest.raises(DepthGError, match=f"training: the train crops .*depth.*{fix}"):
        T.train(synth, tmp_path / "run", device="cpu", progress=False)
    assert not (tmp_path / "run" / "train.json").exists()
    with pytest.raises(DepthGError, match=f"kNN: the train crops .*{fix}"):
        run_knn_stage(synth, device="cpu", progress=False)
    run_crop_stage(synth, split="all", force=True, progress=False)  # the named command
    run_knn_stage(synth, device="cpu", force=True, progress=False)  # the one knn then names
    T.train(synth, tmp_path / "run", device="cpu", progress=False)
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["depth_backend"] == "synth"
    _depth_of_crops_is_todays(synth)


def test_profile_naming_another_backend_than_the_depth_maps_is_refused(profile, tmp_path):
    run_depth_stage(profile, progress=False)
    run_crop_stage(profile, split="all", progress=False)
    run_knn_stage(profile, device="cpu", progress=False)
    synth = profile.replace(depth_backend="synth", depth_model="random")  # depth not redone
    fix = "python -m depthg_lib.depth --profile test --force"
    for stage in (lambda: T.train(synth, tmp_path / "run", device="cpu", progress=False),
                  lambda: run_knn_stage(synth, device="cpu", progress=False),
                  lambda: run_crop_stage(synth, split="all", force=True, progress=False)):
        with pytest.raises(DepthGError, match=f"backend 'gt'.*asks for 'synth'.*{fix}"):
            stage()
    assert not (tmp_path / "run" / "train.json").exists()


def test_image_replaced_after_cropping_stops_training(profile, tmp_path):
    run_depth_stage(profile, progress=False)
    run_crop_stage(profile, split="all", progress=False)
    run_knn_stage(profile, device="cpu", progress=False)
    reader = reader_for_profile(profile)
    path = reader.image_path("train", reader.names("train")[0])
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(path, quality=95)
    with pytest.raises(DepthGError, match="training: the train crops .*other train images.*"
                                          "depthg_lib.depth --profile test --force"):
        T.train(profile, tmp_path / "run", device="cpu", progress=False)


# -- a folder of one's own photos, no val/ -----------------------------------------------------

@pytest.fixture
def photos(scenes, tmp_path):
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    for i, src in enumerate(sorted((scenes / "imgs" / "train").glob("*.jpg"))):
        shutil.copy(src, folder / ("trip" if i else ".") / f"photo{i}.jpg")
    return load_profile("test").replace(
        dataset="directory", data_root=str(tmp_path), dataset_dir="photos",
        depth_backend="synth", depth_model="random", knn_res=16, knn_k=2, knn_store=4,
        backbone="embedded-random", batch_size=4)


def test_photos_without_val_run_depth_crop_and_knn_with_their_defaults(photos, capsys):
    from depthg_lib.data.__main__ import main as data_main

    root = photos.paths.dataset_dir
    assert data_main(["check", "--profile", str(_saved(photos))]) == 0
    said = capsys.readouterr().out
    assert "no val split" in said and str(root / "val") in said and "usable" in said
    run_depth_stage(photos, progress=False)  # default split: all
    run_crop_stage(photos, progress=False)
    run_knn_stage(photos, device="cpu", progress=False)
    assert len(CropReader.from_profile(photos, "train")) == 15
    with pytest.raises(DepthGError, match=f"no val split.*{root / 'val'}"):
        run_crop_stage(photos, split="val", progress=False)  # a val split asked for by name


def test_photos_with_an_unreadable_one_follow_the_named_commands(photos):
    root = photos.paths.dataset_dir
    (root / "broken.jpg").write_bytes(b"not a picture")
    with pytest.raises(DepthGError, match="--skip-bad"):
        run_depth_stage(photos, progress=False)
    run_depth_stage(photos, skip_bad=True, progress=False)  # what that message says
    run_crop_stage(photos, progress=False)  # leaves out what the depth stage left out
    assert len(CropReader.from_profile(photos, "train")) == 15
    assert get_reader("directory", root).check().usable


def _saved(profile):
    """`profile` as a YAML file (what `data check --profile FILE` reads)."""
    path = profile.paths.data_root / "photos.yaml"
    path.write_text("extends: test\ndataset: directory\n"
                    f"data_root: {profile.paths.data_root}\ndataset_dir: photos\n")
    return path
