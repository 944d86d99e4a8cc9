"""Depth stage (docs/method.md §2): backends, stored format, resume, refusals and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from depthg_lib import depth as depth_mod
from depthg_lib.config import load_profile
from depthg_lib.data import reader_for_profile
from depthg_lib.data.synthscenes import FAR_DEPTH
from depthg_lib.depth import (
    compare_with_ground_truth,
    depth_agreement,
    depth_to_uint16,
    load_depth_model,
    load_depth_png,
    mean_agreement,
    run_depth_stage,
)
from depthg_lib.depth_format import depth_from_uint16
from depthg_lib.errors import DepthGError, run_cli

torch.set_num_threads(1)
N_TRAIN, N_VAL, SIZE = 4, 2, 32


# --------------------------------------------------------------------------- fixtures

@pytest.fixture
def data_root(synth_data_root, tmp_path):
    """A tiny SynthScenes data root of its own for each test, to write depth maps into."""
    return synth_data_root(tmp_path / "data", N_TRAIN, N_VAL, SIZE)


def _profile(data_root, **overrides):
    values = dict(data_root=str(data_root), dataset_dir="ss", synth_n_train=N_TRAIN,
                  synth_n_val=N_VAL, synth_size=SIZE, synth_seed=3, depth_batch=3)
    values.update(overrides)
    return load_profile("test", **values)


def _all_names(reader):
    return [(s, n) for s in ("train", "val") for n in reader.names(s)]


def _tiny_zoedepth(folder):
    from transformers import (
        BeitConfig,
        ZoeDepthConfig,
        ZoeDepthForDepthEstimation,
        ZoeDepthImageProcessor,
    )

    torch.manual_seed(0)
    backbone = BeitConfig(image_size=32, patch_size=4, num_hidden_layers=4, hidden_size=16,
                          intermediate_size=32, num_attention_heads=2,
                          use_relative_position_bias=True, reshape_hidden_states=False,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = ZoeDepthConfig(backbone_config=backbone, neck_hidden_sizes=[8, 8, 8, 8],
                            fusion_hidden_size=8, bottleneck_features=8, num_relative_features=8,
                            bin_embedding_dim=8, num_attractors=[2, 2, 2, 2],
                            bin_configurations=[{"n_bins": 8, "min_depth": 0.001,
                                                 "max_depth": 10.0}])
    model = ZoeDepthForDepthEstimation(config)
    _reinit(model)
    model.save_pretrained(folder)
    ZoeDepthImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _tiny_depth_anything(folder):
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=32, out_indices=[1, 2, 3, 4],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                                 head_hidden_size=8, patch_size=14)
    model = DepthAnythingForDepthEstimation(config)
    _reinit(model)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                      ensure_multiple_of=14, do_pad=False).save_pretrained(folder)
    return folder


def _reinit(model):
    """Random-init tiny depth models predict constants (STACK.md): spread the weights."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("hf")
    return {"zoedepth": _tiny_zoedepth(root / "zoe"),
            "depth_anything": _tiny_depth_anything(root / "da")}


def _raw_prediction(folder, images, source_sizes=False):
    """The model's own post-processed output, without the backend's wrapper."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
    proc = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    pixels = (images * 255).round().to(torch.uint8)
    with torch.no_grad():
        out = model(**proc(images=list(pixels), return_tensors="pt"))
    sizes = [tuple(images.shape[-2:])] * len(images)
    extra = {"source_sizes": sizes} if source_sizes else {}
    post = proc.post_process_depth_estimation(out, target_sizes=sizes, **extra)
    return torch.stack([p["predicted_depth"] for p in post])


# --------------------------------------------------------------------------- backends

@pytest.mark.parametrize("backend", ["zoedepth", "depth_anything"])
def test_transformers_backend_on_tiny_random_model(hf_models, backend):
    model = load_depth_model(backend, str(hf_models[backend]), device="cpu")
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    depth = model.estimate_depth(images)
    assert depth.shape == (2, 40, 56) and depth.dtype == torch.float32
    assert torch.isfinite(depth).all() and depth.std() > 1e-4  # not a constant map
    raw = _raw_prediction(hf_models[backend], images, source_sizes=backend == "zoedepth")
    if backend == "zoedepth":  # metric depth, larger = farther: passed through
        assert (depth > 0).all()
        torch.testing.assert_close(depth, raw)
    else:  # relative inverse depth (larger = nearer): negated so that larger = farther
        torch.testing.assert_close(depth, -raw)
    assert model.settings()["weights_sha256"] and model.settings()["model"] == \
        str(hf_models[backend])


def test_transformers_backend_from_hf_cache(hf_models, tmp_path, monkeypatch):
    """A model id is resolved in the Hugging Face cache, offline."""
    import shutil

    import huggingface_hub.constants as hf_constants

    repo = tmp_path / "hub" / "models--tiny--zoe"
    shutil.copytree(hf_models["zoedepth"], repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model = load_depth_model("zoedepth", "tiny/zoe", model_dir=tmp_path / "none")
    assert model.model_id == "tiny/zoe"
    assert model.estimate_depth(torch.rand(1, 3, 24, 24)).shape == (1, 24, 24)


@pytest.mark.parametrize("backend,model_id", [("zoedepth", "Intel/zoedepth-nyu"),
                                               ("depth_anything",
                                                "depth-anything/Depth-Anything-V2-Small-hf")])
def test_missing_model_is_one_clear_error(tmp_path, monkeypatch, backend, model_id):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DepthGError) as err:
        load_depth_model(backend, model_dir=tmp_path / "models")
    message = str(err.value)
    assert model_id in message and str(tmp_path / "models" / model_id) in message


def test_wrong_model_kind_is_refused(hf_models):
    with pytest.raises(DepthGError, match="expects 'zoedepth'"):
        load_depth_model("zoedepth", str(hf_models["depth_anything"]))


def test_synth_backend_random_init():
    model = load_depth_model("synth", "random")
    images = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    depth = model.estimate_depth(images)
    assert depth.shape == (2, 48, 64) and torch.isfinite(depth).all()
    assert model.settings()["model"] == "embedded-random"


def test_synth_backend_shipped_weights_or_clear_error():
    from depthg_lib.embedded import embedded_weights_available

    if embedded_weights_available("depth"):
        assert load_depth_model("synth").settings()["weights_sha256"]
    else:
        with pytest.raises(DepthGError, match="python -m depthg_lib.pretrain"):
            load_depth_model("synth")


# --------------------------------------------------------------------------- format

def test_uint16_storage_and_released_quantisation():
    v = np.array([0.0, 1.0, 100 / 255, (101 - 0.3) / 255, (101 - 0.001) / 255, 0.5])
    stored = np.round(v * 65535).astype(np.uint16)
    released = depth_from_uint16(stored, "released")
    # floor(v·255) as the released depth script wrote it, except within 1/514 below an integer
    np.testing.assert_array_equal(released, [0, 255, 100, 100, 101, 127])
    assert np.floor(v[4] * 255) == 100  # ... where the 16-bit rounding lifts it (documented)
    np.testing.assert_allclose(depth_from_uint16(stored, "corrected"), v, atol=0.5 / 65535)
    eight = np.array([[0, 7, 255]], dtype=np.uint8)  # a PNG written by the released code
    np.testing.assert_array_equal(depth_from_uint16(eight, "released"), [[0, 7, 255]])
    d = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_array_equal(depth_to_uint16(d), [[0, 16384], [32768, 65535]])
    assert depth_to_uint16(np.full((2, 2), 3.0)).max() == 0  # constant map: no division by 0


def test_load_depth_png_both_fidelities_and_errors(tmp_path):
    arr = np.array([[0, 257 * 10 + 100, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    np.testing.assert_array_equal(load_depth_png(tmp_path / "d.png", "released"), [[0, 10, 255]])
    np.testing.assert_allclose(load_depth_png(tmp_path / "d.png", "corrected"), arr / 65535)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DepthGError, match="bad.png"):
        load_depth_png(tmp_path / "bad.png")
    with pytest.raises(DepthGError, match="python -m depthg_lib.depth"):
        load_depth_png(tmp_path / "missing.png")


def test_depth_agreement():
    ref = np.arange(12, dtype=float).reshape(3, 4)
    same = depth_agreement(2 * ref + 5, ref)  # scale and shift do not matter
    assert same["mae"] == pytest.approx(0) and same["spearman"] == pytest.approx(1)
    flipped = depth_agreement(-ref, ref)
    assert flipped["spearman"] == pytest.approx(-1) and flipped["mae"] > 0.4


# --------------------------------------------------------------------------- stage

def test_gt_stage_writes_normalised_ground_truth(data_root):
    profile = _profile(data_root, depth_backend="gt")
    out = run_depth_stage(profile, progress=False)
    reader = reader_for_profile(profile)
    assert out == data_root / "ss" / "depth"
    record = json.loads((out / "depth.json").read_text())
    assert record["backend"] == "gt" and record["resolution"] == "native"
    sky_seen = False
    for split, name in _all_names(reader):
        path = reader.depth_path(split, name)
        with Image.open(path) as img:
            assert img.mode.startswith("I;16")
            stored = np.asarray(img)
        gt = reader.load_gt_depth(split, name)
        np.testing.assert_array_equal(stored, depth_to_uint16(gt))
        sky = gt >= FAR_DEPTH
        sky_seen |= bool(sky.any())
        assert (stored[sky] == 65535).all()  # sky = far plane = 1.0 after normalisation
        d = load_depth_png(path, "corrected")
        assert d.min() == 0 and d.max() == 1
    assert sky_seen
    images, stored, truth = compare_with_ground_truth(reader, "val", reader.names("val"))
    assert len(images) == N_VAL and images[0].shape == (SIZE, SIZE, 3)
    scores = mean_agreement(stored, truth)  # the stored maps are the ground truth, 16-bit
    assert scores["mae"] < 1e-5 and scores["spearman"] > 0.9999
    _, predicted, _ = compare_with_ground_truth(reader, "val", reader.names("val")[:1],
                                                model=load_depth_model("synth", "random"))
    assert predicted[0].shape == (SIZE, SIZE)


@pytest.mark.parametrize("backend", ["zoedepth", "synth"])
def test_model_stage_writes_every_image(data_root, hf_models, backend):
    model = str(hf_models["zoedepth"]) if backend == "zoedepth" else "random"
    profile = _profile(data_root, depth_backend=backend, depth_model=model)
    out = run_depth_stage(profile, device="cpu", progress=False)
    reader = reader_for_profile(profile)
    for split in ("train", "val"):
        for name in reader.names(split):
            d = load_depth_png(reader.depth_path(split, name))
            assert d.shape == (SIZE, SIZE) and d.min() == 0 and d.max() == 1
    record = json.loads((out / "depth.json").read_text())
    assert record["backend"] == backend and record["model"] in (model, "embedded-random")


def test_resume_after_interruption_writes_only_what_is_missing(data_root, monkeypatch):
    profile = _profile(data_root, depth_backend="gt")
    real_save, written = depth_mod.io.save_image, []

    def dying_save(path, array):
        if len(written) == 3:
            raise KeyboardInterrupt  # the run is killed after three maps
        written.append(path)
        real_save(path, array)

    monkeypatch.setattr(depth_mod.io, "save_image", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run_depth_stage(profile, progress=False)
    first = list(written)
    assert len(first) == 3 and not list((data_root / "ss" / "depth").rglob("*.tmp*"))

    monkeypatch.setattr(depth_mod.io, "save_image", lambda p, a: (written.append(p),
                                                               real_save(p, a)))
    written.clear()
    run_depth_stage(profile, progress=False)
    assert len(written) == N_TRAIN + N_VAL - 3 and not set(written) & set(first)

    written.clear()  # a finished stage: nothing to do
    run_depth_stage(profile, progress=False)
    assert written == []
    reader = reader_for_profile(profile)
    victim = reader.depth_path("val", reader.names("val")[0])
    victim.unlink()  # a lost output is redone, the rest kept
    run_depth_stage(profile, progress=False)
    assert written == [victim]


def test_other_settings_refused_unless_forced(data_root):
    run_depth_stage(_profile(data_root, depth_backend="gt"), progress=False)
    other = _profile(data_root, depth_backend="synth", depth_model="random")
    with pytest.raises(DepthGError, match="--force") as err:
        run_depth_stage(other, progress=False, device="cpu")
    assert "gt" in str(err.value) and "synth" in str(err.value)
    out = run_depth_stage(other, force=True, progress=False, device="cpu")
    assert json.loads((out / "depth.json").read_text())["backend"] == "synth"


def test_corrupt_image_named_or_skipped(data_root):
    profile = _profile(data_root, depth_backend="synth", depth_model="random")
    reader = reader_for_profile(profile)
    bad_name = reader.names("train")[1]
    bad = reader.image_path("train", bad_name)
    bad.write_bytes(b"\xff\xd8\xff garbage, not a JPEG")
    with pytest.raises(DepthGError, match=bad.name + ".*or pass --skip-bad"):
        run_depth_stage(profile, device="cpu", progress=False)
    out = run_depth_stage(profile, skip_bad=True, device="cpu", progress=False)
    assert json.loads((out / "depth_skipped.json").read_text()) == [f"train/{bad_name}"]
    assert not reader.depth_path("train", bad_name).exists()
    others = [n for n in reader.names("train") if n != bad_name]
    assert all(reader.depth_path("train", n).exists() for n in others)


def test_stage_before_dataset_names_the_command(tmp_path, capsys):
    profile = _profile(tmp_path / "nothing-here", depth_backend="gt")
    with pytest.raises(DepthGError, match="python -m depthg_lib.data.synthscenes --out"):
        run_depth_stage(profile, progress=False)
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"extends: test\ndata_root: {tmp_path / 'nothing-here'}\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(depth_mod.main, ["--profile", str(yaml), "--no-progress"])
    assert exit_info.value.code == 2 and "depthg_lib.data.synthscenes" in capsys.readouterr().err


def test_cli(data_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        depth_mod.main(["--help"])
    assert exit_info.value.code == 0 and "--skip-bad" in capsys.readouterr().out
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"extends: test\ndata_root: {data_root}\ndataset_dir: ss\n"
                    f"synth_n_train: {N_TRAIN}\nsynth_n_val: {N_VAL}\nsynth_size: {SIZE}\n")
    assert depth_mod.main(["--profile", str(yaml), "--no-progress"]) == 0
    assert "depth maps in" in capsys.readouterr().out
    assert len(list((data_root / "ss" / "depth" / "val").glob("*.png"))) == N_VAL


def test_a_disk_too_small_for_the_maps_stops_the_stage_early_and_it_resumes(data_root, disk_free):
    """The first batch's space, projected over the rest, must fit what is free: otherwise one
    error naming the folder before the disk fills; the same command finishes once there is
    room, keeping the maps already written."""
    profile = _profile(data_root)
    disk_free(100)  # the first 3 maps took some kB: the last train map needs more than 100 bytes
    with pytest.raises(DepthGError, match=r"the remaining 1 train depth maps need about 0\.0 GB "
                                          r"and 0\.0 GB is free there"):
        run_depth_stage(profile, progress=False)
    disk_free(10**12)
    out = run_depth_stage(profile, progress=False)
    reader = reader_for_profile(profile)
    assert all(reader.depth_path(s, n).is_file() for s, n in _all_names(reader))
    assert (out / "depth.json").is_file()


def test_other_programs_filling_the_disk_meanwhile_do_not_count_as_the_maps_space(data_root,
                                                                                  disk_free):
    """The projection reads what the maps themselves took: 900 GB written by someone else while
    the first maps were made must not stop a stage whose maps need kilobytes."""
    profile = _profile(data_root)
    disk_free(10**12, 10**11)
    run_depth_stage(profile, progress=False)
    reader = reader_for_profile(profile)
    assert all(reader.depth_path(s, n).is_file() for s, n in _all_names(reader))
