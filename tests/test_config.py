"""Profiles load, validate, and fail with one readable error."""

import pytest

from depthg_lib.config import available_profiles, load_profile, shipped_name
from depthg_lib.errors import DepthGError

PAPER = ["cocostuff27-vits8", "cocostuff27-vitb8", "cityscapes-vitb8", "potsdam-vits8"]


@pytest.mark.parametrize("name", available_profiles())
def test_every_shipped_profile_loads(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.samples <= profile.res // 8 or profile.backbone.endswith("14")


def test_expected_profiles_exist():
    names = set(available_profiles())
    assert {"test", "demo", "synth-gpu", *PAPER} <= names
    assert {f"stego-{p}" for p in PAPER} <= names


def test_paper_values_spec_section_10():
    vitb = load_profile("cocostuff27-vitb8")
    assert vitb.dim == 90 and vitb.samples == 12 and vitb.val_every == 50
    assert vitb.weight_inter == pytest.approx(1.0500945312858674)
    city = load_profile("cityscapes-vitb8")
    assert city.sampling == "random" and not city.pointwise and city.dim == 100
    potsdam = load_profile("potsdam-vits8")
    assert potsdam.batch_size == 16 and potsdam.n_classes == 3
    stego = load_profile("stego-cocostuff27-vits8")
    assert not stego.use_depth and stego.sampling == "random"
    for name in PAPER:
        assert load_profile(name).fidelity == "released"
    assert load_profile("demo").fidelity == "corrected"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(DepthGError, match="Valid profiles:.*demo"):
        load_profile("dmeo")


def test_unknown_key_names_file_and_nearest_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: test\nsampels: 4\n")
    with pytest.raises(DepthGError, match=r"mine\.yaml.*'sampels'.*did you mean 'samples'"):
        load_profile(path)


@pytest.mark.parametrize("text, message", [
    ("steps: ten\n", "steps must be int"),
    ("steps: 0\n", "steps must be > 0"),
    ("crop_ratio: 1.5\n", r"crop_ratio must be in \[0, 1\]"),
    ("sampling: grid\n", "sampling must be one of fps, random"),
    ("dropout: 1\n", "dropout must be bool"),
    ("lr: .nan\n", "lr must be a finite number, found nan"),
    ("weight_depth: .inf\n", "weight_depth must be a finite number"),
    ("feature_cache_gb: .inf\n", "feature_cache_gb must be a finite number"),
    ("shift_neg: -.inf\n", "shift_neg must be a finite number"),
])
def test_bad_values_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text("extends: test\n" + text)
    with pytest.raises(DepthGError, match=message):
        load_profile(path)


def test_int_is_accepted_for_float_and_replace_validates():
    profile = load_profile("test").replace(lr=1)
    assert isinstance(profile.lr, float)
    with pytest.raises(DepthGError, match="did you mean 'samples'"):
        profile.replace(sample=3)


def test_paths_follow_spec_section_11():
    paths = load_profile("cocostuff27-vits8").paths
    assert paths.crop_dir.name == "cocostuff27_five_crop_0.5"
    assert paths.knn_file().name == (
        "nns_vit_small_patch8_224.dino_cocostuff27_train_five_392.npz")


def test_positive_int_for_counts_on_the_command_line():
    import argparse

    from depthg_lib.config import positive_int

    parser = argparse.ArgumentParser()
    parser.add_argument("--max-images", type=positive_int)
    assert parser.parse_args(["--max-images", "3"]).max_images == 3
    for bad in ("0", "-2", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--max-images", bad])


def test_a_copy_of_a_shipped_profile_runs_apart_but_is_still_that_profile(tmp_path):
    shipped = load_profile("test")
    (tmp_path / "test.yaml").write_text("extends: test\nseed: 3\n")
    copy = load_profile(tmp_path / "test.yaml")
    assert copy.name != "test" and copy.name.startswith("test-")
    assert copy.paths.run_dir != shipped.paths.run_dir
    assert shipped_name(copy) == shipped_name(shipped) == "test"
    # a name that only looks like a suffixed one is its own
    (tmp_path / "mine.yaml").write_text("extends: test\nname: test-0123abcd\n")
    assert shipped_name(load_profile(tmp_path / "mine.yaml")) == "test-0123abcd"
