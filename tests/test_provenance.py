"""No stage output may silently come from stale inputs.

Each scenario is what a learner does by hand — a new dataset seed, another depth backend, an
image replaced in place, a regenerated dataset — followed by the stages with or without
--force; each must end in a correct result or one clear refusal naming the command.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from filelock import FileLock
from PIL import Image

from depthg_lib import features as featcache
from depthg_lib import knn as knn_mod
from depthg_lib.config import load_profile
from depthg_lib.crop import CropReader, crop_array, five_crop_boxes, run_crop_stage
from depthg_lib.data import reader_for_profile
from depthg_lib.data.synthscenes import generate
from depthg_lib.depth import depth_to_uint16, run_depth_stage
from depthg_lib.errors import DepthGError
from depthg_lib.io import read_label
from depthg_lib.knn import run_knn_stage

torch.set_num_threads(1)
N_TRAIN, N_VAL, SIZE = 3, 1, 32


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two tiny SynthScenes folders (seeds 3 and 4), rendered once; tests copy them."""
    root = tmp_path_factory.mktemp("scenes")
    for seed in (3, 4):
        generate(root / f"seed{seed}", N_TRAIN, N_VAL, SIZE, seed=seed, progress=False)
    return root


def _profile(data_root, **overrides):
    values = dict(data_root=str(data_root), dataset_dir="ss", synth_n_train=N_TRAIN,
                  synth_n_val=N_VAL, synth_size=SIZE, synth_seed=3, depth_backend="gt",
                  knn_res=16, knn_k=3, knn_store=8, batch_size=8, backbone="embedded-random",
                  res=16)
    values.update(overrides)
    return load_profile("test", **values)


@pytest.fixture
def profile(scenes, tmp_path):
    shutil.copytree(scenes / "seed3", tmp_path / "data" / "ss")
    return _profile(tmp_path / "data")


def _replace_dataset(profile, scenes, seed):
    """What `synthscenes --force` with another seed does: new images, old depth/ kept."""
    root = profile.paths.dataset_dir
    for sub in ("imgs", "labels", "depth_gt", "instances"):
        shutil.rmtree(root / sub)
        shutil.copytree(scenes / f"seed{seed}" / sub, root / sub)
    shutil.copy(scenes / f"seed{seed}" / "synthscenes.json", root / "synthscenes.json")


def _stages(profile, force=False):
    run_depth_stage(profile, force=force, progress=False)
    run_crop_stage(profile, split="all", force=force, progress=False)


def _crop_matches_sources(profile, split="train"):
    """Every crop's label and depth equal the boxes of today's source label and depth map."""
    reader = reader_for_profile(profile)
    crops = CropReader.from_profile(profile, split)
    for n in range(len(crops)):
        name, k = crops.source(n)
        label = reader.load_label(split, name)
        depth = np.asarray(Image.open(reader.depth_path(split, name)))
        box = five_crop_boxes(*label.shape, profile.crop_ratio)[k]
        _, crop_label, crop_depth = crops.load(n)
        np.testing.assert_array_equal(crop_label, crop_array(label, box))
        np.testing.assert_array_equal(crop_depth, crop_array(depth, box))


# -- a new dataset seed, then every stage with --force ----------------------------------------

def test_new_dataset_then_force_rebuilds_the_feature_cache(profile, scenes):
    from depthg_lib.models import load_backbone

    backbone = load_backbone("embedded-random")
    settings = {"crops": str(profile.paths.crop_dir), "res": 16, "n_train": 5 * N_TRAIN}
    folder = profile.paths.data_root / "features" / "cache"

    def cache():
        crops = CropReader.from_profile(profile, "train")
        return featcache.build_cache(crops, "train", folder, backbone, res=16,
                                     fidelity="corrected", settings=settings,
                                     device=torch.device("cpu"), progress=False), crops

    _stages(profile)
    old, _ = cache()
    old_labels = np.array(old.labels)
    _replace_dataset(profile, scenes, seed=4)
    _stages(profile, force=True)
    new, crops = cache()  # same folder, same counts: only the inputs' digest tells them apart
    for n in range(len(crops)):
        label = featcache.prepare_crop(*crops.load(n), 16, "corrected")[1]
        np.testing.assert_array_equal(new.labels[n], label)
    assert not np.array_equal(np.array(new.labels), old_labels)


# -- another depth backend, then crop without --force ------------------------------------------

def test_depth_backend_switch_then_crop_refuses_or_redoes(profile):
    _stages(profile)
    synth = profile.replace(depth_backend="synth", depth_model="random")
    run_depth_stage(synth, force=True, progress=False)
    with pytest.raises(DepthGError) as err:
        run_crop_stage(synth, split="all", progress=False)
    message = str(err.value)
    assert "crop.json" in message and "depth" in message
    assert "python -m depthg_lib.crop --profile test --split all --force" in message
    run_crop_stage(synth, split="all", force=True, progress=False)
    _crop_matches_sources(synth)


def test_interrupted_forced_depth_is_refused_by_crop_until_finished(profile, monkeypatch):
    from depthg_lib import depth as depth_mod

    _stages(profile)
    calls = []

    def fail_after_first(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    real = depth_mod.io.save_image
    monkeypatch.setattr(depth_mod.io, "save_image", fail_after_first)
    with pytest.raises(KeyboardInterrupt):
        run_depth_stage(profile.replace(depth_batch=1), force=True, progress=False)
    monkeypatch.undo()
    with pytest.raises(DepthGError, match="needs depth maps first"):
        run_crop_stage(profile, split="all", force=True, progress=False)
    run_depth_stage(profile, progress=False)  # the plain command finishes the maps
    run_crop_stage(profile, split="all", force=True, progress=False)
    _crop_matches_sources(profile)
    _crop_matches_sources(profile, "val")


# -- an image replaced in place ----------------------------------------------------------------

def test_image_replaced_in_place_is_noticed_everywhere(profile):
    _stages(profile)
    reader = reader_for_profile(profile)
    name = reader.names("train")[1]
    path = reader.image_path("train", name)
    Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8)).save(path, quality=95)
    report = reader_for_profile(profile).check(deep=True)
    assert not report.usable and "STALE" in str(report) and "--force" in str(report)
    report = reader_for_profile(profile).check(profile_arg="test")
    assert "python -m depthg_lib.depth --profile test --force" in str(report)
    with pytest.raises(DepthGError, match=r"train images.*depthg_lib\.depth --profile test "
                                          r"--force"):
        run_depth_stage(profile, progress=False)
    with pytest.raises(DepthGError, match=r"five-crop: the depth maps .*other train images.*"
                                          r"depthg_lib\.depth --profile test --force"):
        run_crop_stage(profile, split="all", progress=False)  # the stale link upstream first
    _stages(profile, force=True)
    assert reader_for_profile(profile).check(deep=True).usable
    crops = CropReader.from_profile(profile, "train")
    n = 5 * reader.names("train").index(name)
    assert (crops.load(n)[0] > 150).all()  # the new picture, not the old one


# -- a regenerated dataset leaves old depth maps ------------------------------------------------

def test_regenerated_dataset_old_depth_maps_are_not_reused(profile, scenes):
    run_depth_stage(profile, progress=False)
    _replace_dataset(profile, scenes, seed=4)
    with pytest.raises(DepthGError, match="--force"):
        run_depth_stage(profile, progress=False)
    assert "STALE" in str(reader_for_profile(profile).check())
    run_depth_stage(profile, force=True, progress=False)
    reader = reader_for_profile(profile)
    for split in ("train", "val"):
        for name in reader.names(split):
            from depthg_lib.depth import _gt_depth

            stored = np.asarray(Image.open(reader.depth_path(split, name)))
            np.testing.assert_array_equal(stored, depth_to_uint16(_gt_depth(reader, split, name)))


# -- kNN after the crops changed -----------------------------------------------------------------

def test_knn_refuses_crops_cut_afresh(profile):
    _stages(profile)
    run_knn_stage(profile, device="cpu", progress=False)
    label = CropReader.from_profile(profile, "train").paths(0)["label"]
    Image.fromarray(np.zeros_like(read_label(label))).save(label)  # crops edited by hand
    with pytest.raises(DepthGError, match="crops in"):
        run_knn_stage(profile, device="cpu", progress=False)
    with pytest.raises(DepthGError, match="knn --profile test --split train --force"):
        knn_mod.require_current_knn(profile, CropReader.from_profile(profile, "train"))
    run_knn_stage(profile, device="cpu", force=True, progress=False)
    knn_mod.require_current_knn(profile, CropReader.from_profile(profile, "train"))


# -- one writer per stage output -----------------------------------------------------------------

def test_second_concurrent_run_gets_one_clear_message(profile):
    depth_dir = profile.paths.dataset_dir / "depth"  # where depth.json and its lock live
    depth_dir.mkdir()
    with FileLock(depth_dir / ".depth.lock"):
        with pytest.raises(DepthGError, match="another depth run is writing to"):
            run_depth_stage(profile, progress=False)
    run_depth_stage(profile, progress=False)  # released: runs
    profile.paths.crop_dir.mkdir(parents=True)
    with FileLock(profile.paths.crop_dir / ".crop.lock"):
        with pytest.raises(DepthGError, match="another crop run"):
            run_crop_stage(profile, progress=False)
    assert not (profile.paths.crop_dir / "crop.json").exists()  # refused before any write


def test_two_depth_runs_with_other_settings_at_once_do_not_interleave(profile, tmp_path):
    """A real second process: the one that comes second is refused, nothing is mixed."""
    import subprocess
    import sys
    import textwrap

    depth_dir = profile.paths.dataset_dir / "depth"
    depth_dir.mkdir()
    holder = textwrap.dedent(f"""
        import sys
        from filelock import FileLock
        with FileLock({str(depth_dir / '.depth.lock')!r}):
            print('held', flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(DepthGError, match="another depth run"):
            run_depth_stage(profile.replace(depth_backend="synth", depth_model="random"),
                            progress=False)
    finally:
        proc.communicate("\n", timeout=30)
    assert not list(depth_dir.rglob("*.png"))
