"""kNN mining (docs/method.md §4): golden top-k, bounded memory, the stage and its refusals."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthg_lib import knn as knn_mod
from depthg_lib.config import load_profile
from depthg_lib.errors import DepthGError, run_cli
from depthg_lib.knn import (
    chance_agreement,
    global_features,
    knn_record_path,
    load_knn,
    majority_classes,
    neighbour_agreement,
    pool_features,
    resize_for_knn,
    run_knn_stage,
    same_source_share,
    topk_neighbours,
)

torch.set_num_threads(1)
GOLDEN = Path(__file__).parent / "data" / "golden"


# --------------------------------------------------------------------------- mining

def test_golden_i_knn_both_paths():
    g = np.load(GOLDEN / "i_knn.npz")
    feats = torch.from_numpy(g["feats"])  # (20,16,4,4) patch-token maps
    pooled = global_features(torch.nn.Identity(), feats)  # pool → unit norm
    torch.testing.assert_close(pooled.norm(dim=1), torch.ones(20))
    np.testing.assert_array_equal(topk_neighbours(pooled, 5, block=7), g["nns_top6"])
    np.testing.assert_array_equal(topk_neighbours(pooled.numpy(), 5, block=3), g["nns_top6"])


def test_self_first_with_duplicates_and_ties_to_lower_index():
    rng = np.random.default_rng(0)
    base = pool_features(torch.from_numpy(rng.standard_normal((4, 8, 1, 1)).astype(np.float32)))
    feats = base.repeat_interleave(3, dim=0)  # items 3i, 3i+1, 3i+2 are identical
    for arr in (feats, feats.numpy()):
        nns = topk_neighbours(arr, 4, block=5)
        np.testing.assert_array_equal(nns[:, 0], np.arange(12))
        np.testing.assert_array_equal(nns[1, 1:3], [0, 2])  # its two copies, lower first
        np.testing.assert_array_equal(nns[4, 1:3], [3, 5])
    # the cut falls inside a group of equal scores: the lower indices win, on both paths
    np.testing.assert_array_equal(topk_neighbours(feats, 3), topk_neighbours(feats.numpy(), 3))


def test_k_larger_than_n_lists_everyone():
    feats = pool_features(torch.randn(5, 4, 1, 1, generator=torch.Generator().manual_seed(0)))
    nns = topk_neighbours(feats.numpy(), 29)
    assert nns.shape == (5, 5)
    assert all(sorted(row) == list(range(5)) and row[0] == i for i, row in enumerate(nns))


def test_no_n_by_n_matrix_for_20000_items(monkeypatch):
    n, d, block = 20_000, 8, 256
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n, d)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    shapes = []
    real = knn_mod._similarity_block

    def recording(q, f):
        out = real(q, f)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(knn_mod, "_similarity_block", recording)
    tracemalloc.start()
    try:
        nns = topk_neighbours(feats, 7, block=block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(shapes) == (block, n) and len(shapes) == -(-n // block)
    full = n * n * 4  # one float32 N×N matrix: 1.6 GB
    assert peak < 6 * block * n * 8 < full / 5, f"peak {peak / 1e6:.0f} MB"
    rows = rng.choice(n, 5, replace=False)
    for i in rows:  # spot-check against brute force on single rows
        scores = feats @ feats[i]
        scores[i] = -np.inf
        np.testing.assert_array_equal(nns[i, 1:], np.argsort(-scores, kind="stable")[:7])


def test_torch_path_blocks_and_agrees_with_numpy(monkeypatch):
    n, block = 3000, 128
    feats = pool_features(torch.randn(n, 16, 1, 1, generator=torch.Generator().manual_seed(1)))
    shapes = []
    real = knn_mod._similarity_block
    monkeypatch.setattr(knn_mod, "_similarity_block",
                        lambda q, f: shapes.append(tuple(q.shape[:1]) + (len(f),)) or real(q, f))
    a = topk_neighbours(feats, 7, block=block)
    assert max(shapes) == (block, n)
    np.testing.assert_array_equal(a, topk_neighbours(feats.numpy(), 7, block=1000))


def test_resize_for_knn_released_is_pil_nearest():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = resize_for_knn(image, 16, "released")
    assert out.shape == (3, 16, 16)
    pil = np.asarray(Image.fromarray(image).resize((24, 16), Image.NEAREST))
    expected = pil[:, 4:20]  # shorter side 16, then the centre 16 columns
    np.testing.assert_array_equal((out.permute(1, 2, 0).numpy() * 255).round(), expected)
    smooth = resize_for_knn(image, 16, "corrected")
    assert smooth.shape == (3, 16, 16) and 0 <= smooth.min() and smooth.max() <= 1


def test_agreement_measures():
    labels = [np.array([[0, 0, 1]]), np.array([[1, 1, 255]]), np.full((1, 3), 255),
              np.array([[2, 0, 2]])]
    np.testing.assert_array_equal(majority_classes(labels), [0, 1, -1, 2])
    majority = np.array([0, 0, 1, 1, -1])
    nns = np.array([[0, 1, 2], [1, 0, 4], [2, 3, 0], [3, 0, 1], [4, 0, 1]])
    # valid pairs: (0,1)✓ (0,2)✗ (1,0)✓ (2,3)✓ (2,0)✗ (3,0)✗ (3,1)✗ → 3/7
    assert neighbour_agreement(nns, majority) == pytest.approx(3 / 7)
    assert neighbour_agreement(nns, majority, k=1) == pytest.approx(3 / 4)
    assert chance_agreement(majority) == pytest.approx((2 + 2) / (4 * 3))
    groups = np.array([0, 0, 1, 2, 2])  # crops 0 and 1 come from the same image, 3 and 4 too
    # same-image pairs (0,1) and (1,0) left out: (0,2)✗ (2,3)✓ (2,0)✗ (3,0)✗ (3,1)✗ → 1/5
    assert neighbour_agreement(nns, majority, groups=groups) == pytest.approx(1 / 5)
    assert same_source_share(nns, groups) == pytest.approx(2 / 10)
    # ordered pairs of valid crops from different images: 10, of which 2-3 and 3-2 agree
    assert chance_agreement(majority, groups) == pytest.approx(2 / 10)
    rng = np.random.default_rng(0)  # and the exact formula against brute force
    maj, grp = rng.integers(-1, 4, 60), rng.integers(0, 12, 60)
    i, j = np.nonzero((maj[:, None] >= 0) & (maj[None] >= 0) & (grp[:, None] != grp[None]))
    assert chance_agreement(maj, grp) == pytest.approx((maj[i] == maj[j]).mean())


# --------------------------------------------------------------------------- stage

@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """Tiny SynthScenes → gt depth → five-crop: 6 images, 30 crops of 16 px."""
    from depthg_lib.crop import run_crop_stage
    from depthg_lib.data.synthscenes import generate
    from depthg_lib.depth import run_depth_stage

    root = tmp_path_factory.mktemp("knn") / "data"
    profile = _profile(root)
    generate(profile.paths.dataset_dir, 6, 2, 32, seed=5, progress=False)
    run_depth_stage(profile, progress=False)
    run_crop_stage(profile, split="train", progress=False)
    return root


def _profile(root, **overrides):
    values = dict(data_root=str(root), dataset_dir="ss", synth_n_train=6, synth_n_val=2,
                  synth_size=32, synth_seed=5, depth_backend="gt", knn_res=16, knn_k=3,
                  knn_store=8, knn_block=7, batch_size=8, backbone="embedded-random")
    values.update(overrides)
    return load_profile("test", **values)


def test_stage_mines_saves_and_records(cropped):
    from depthg_lib.crop import CropReader
    from depthg_lib.models import load_backbone

    profile = _profile(cropped)
    out = run_knn_stage(profile, device="cpu", progress=False)
    assert out == profile.paths.knn_file("train")
    nns = load_knn(out)
    assert nns.shape == (30, 8) and nns.dtype == np.int64
    np.testing.assert_array_equal(nns[:, 0], np.arange(30))
    assert all(len(set(row)) == 8 for row in nns)
    record = json.loads(knn_record_path(profile).read_text())
    assert (record["backbone"], record["resolution"], record["K"], record["N"]) == \
        ("embedded-random", 16, 8, 30)
    # the same neighbours, computed by hand from the library's pieces
    reader = CropReader(profile.paths.crop_dir, "train")
    backbone = load_backbone(profile.backbone, None, device="cpu")
    images = torch.stack([resize_for_knn(reader.load(i)[0], 16, profile.fidelity)
                          for i in range(len(reader))])
    feats = global_features(backbone, images)
    np.testing.assert_array_equal(nns, topk_neighbours(feats.numpy(), 7))


def test_stage_rerun_skipped_other_settings_refused(cropped, monkeypatch):
    profile = _profile(cropped)
    out = run_knn_stage(profile, device="cpu", progress=False)
    stamp = out.stat().st_mtime_ns

    def no_backbone(*args, **kwargs):
        raise AssertionError("a finished kNN stage must not load the backbone again")

    import depthg_lib.models

    monkeypatch.setattr(depthg_lib.models, "load_backbone", no_backbone)
    assert run_knn_stage(profile, device="cpu", progress=False) == out
    assert out.stat().st_mtime_ns == stamp
    monkeypatch.undo()

    fewer = _profile(cropped, knn_store=5)  # same file name, other K
    with pytest.raises(DepthGError, match="--force"):
        run_knn_stage(fewer, device="cpu", progress=False)
    run_knn_stage(fewer, force=True, device="cpu", progress=False)
    assert load_knn(out).shape == (30, 5)
    assert not list(out.parent.glob("*.tmp*"))


def test_stage_before_crops_names_the_command(tmp_path, capsys):
    profile = _profile(tmp_path)
    with pytest.raises(DepthGError, match="python -m depthg_lib.crop --profile"):
        run_knn_stage(profile, progress=False)
    yaml = tmp_path / "p.yaml"
    yaml.write_text(f"extends: test\ndata_root: {tmp_path}\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(knn_mod.main, ["--profile", str(yaml), "--no-progress"])
    assert exit_info.value.code == 2 and "depthg_lib.crop" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        knn_mod.main(["--help"])
    assert exit_info.value.code == 0 and "--split" in capsys.readouterr().out
