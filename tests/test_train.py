"""Training loop (docs/method.md §8): schedules, data order, exact resume, NaN stop, feature cache,
errors.

Everything runs on CPU on tiny random crops (32 px, 4×4 feature grid) in a few seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from depthg_lib import train as T
from depthg_lib.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, portable_profile
from depthg_lib.config import load_profile
from depthg_lib.errors import DepthGError

torch.set_num_threads(1)

N_CROPS, SIZE = 12, 40


def tiny_profile(**changes):
    base = dict(res=32, samples=3, fps_min_samples=2, batch_size=4, steps=6, val_every=3,
                checkpoint_every=2, dim=8, n_classes=4, knn_k=2, knn_store=4,
                fps_sample_decay_every=2, depth_decay_every=2, num_workers=0,
                precompute_features=False, val_images=0)
    base.update(changes)
    return load_profile("test").replace(**base)


def tiny_crops(n: int, seed: int, n_classes: int = 4) -> T.ArrayCrops:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, n_classes, (n, SIZE, SIZE), dtype=np.uint8)
    ramp = np.linspace(0, 1, SIZE)[None, :, None] * rng.uniform(0.2, 1, (n, 1, 1))
    depth = np.round(np.clip(ramp + 0.3 * rng.random((n, SIZE, SIZE)), 0, 1) * 65535)
    return T.ArrayCrops(images, labels, depth.astype(np.uint16))


def tiny_data(seed: int = 0, cache_dir=None) -> T.TrainData:
    rng = np.random.default_rng(seed + 100)
    knn = np.stack([np.r_[i, rng.permutation(np.delete(np.arange(N_CROPS), i))[:3]]
                    for i in range(N_CROPS)]).astype(np.int64)
    return T.TrainData(train=tiny_crops(N_CROPS, seed), knn=knn, val=tiny_crops(6, seed + 1),
                       cache_dir=cache_dir, key=f"tiny-{seed}")


def read_rows(path, untrained: bool = False):
    """The rows of log.csv: the training steps, and first the untrained head's if asked."""
    with open(path / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows if untrained else [r for r in rows if r["step"] != str(T.BEFORE_TRAINING)]


LOSS_COLUMNS = [c for c in T.LOG_COLUMNS if c != "step"]


# ------------------------------------------------------------------------------ schedules

def test_sample_decay_fires_at_step_zero_only_in_released():
    released = tiny_profile(fidelity="released", samples=11, fps_min_samples=5,
                            fps_sample_decay_every=1000, fps_sample_decay_factor=0.9,
                            depth_decay_every=250, depth_decay_factor=0.6, res=96)
    corrected = released.replace(fidelity="corrected")
    s_rel, s_cor = T.Schedule.start(released), T.Schedule.start(corrected)
    seen_rel, seen_cor = [], []
    for step in range(1001):
        seen_rel.append(s_rel.samples)
        seen_cor.append(s_cor.samples)
        if step in (0, 249, 250, 251):
            w_before = s_rel.weight_depth
        s_rel.advance(step, released)
        s_cor.advance(step, corrected)
        if step == 0 or step == 249:
            assert s_rel.weight_depth == w_before  # never at step 0
        if step == 250:
            assert s_rel.weight_depth == pytest.approx(0.19 * 0.6)
            assert s_rel.shift_depth == pytest.approx(released.shift_depth * 0.6)
    # golden README note 4: 11×11 at step 0 only, then 9×9; corrected keeps 11 until 1000
    assert seen_rel[0] == 11 and seen_rel[1] == 9 and seen_rel[1000] == 9
    assert s_rel.samples == 8  # int(9·0.9) after step 1000
    assert seen_cor[0] == 11 and seen_cor[1000] == 11 and s_cor.samples == 9


def test_sample_decay_respects_the_lower_bound():
    p = tiny_profile(samples=5, fps_min_samples=4, fps_sample_decay_every=1,
                     fps_sample_decay_factor=0.5)
    s = T.Schedule.start(p)
    for step in range(5):
        s.advance(step, p)
    assert s.samples == 4


# ------------------------------------------------------------------------------ data order

def test_step_batches_depend_on_seed_and_step_only_and_shard_exactly():
    knn = tiny_data().knn
    full = T.StepSampler(knn, 2, 4, seed=3, start=0, stop=8)
    late = T.StepSampler(knn, 2, 4, seed=3, start=5, stop=8)
    a = {b["step"]: b for b in full}
    for b in late:
        assert np.array_equal(a[b["step"]]["idx"], b["idx"])
        assert np.array_equal(a[b["step"]]["pos"], b["pos"])
    # every crop once per epoch (12 crops = 3 steps of 4)
    assert sorted(np.concatenate([a[s]["idx"] for s in range(3)])) == list(range(N_CROPS))
    # positives are among kNN columns 1..knn_k
    for b in a.values():
        for i, j in zip(b["idx"], b["pos"]):
            assert j in knn[i, 1:3]
    ranks = [list(T.StepSampler(knn, 2, 4, 3, 0, 8, rank=r, world=2)) for r in (0, 1)]
    for s in range(8):
        assert np.array_equal(np.r_[ranks[0][s]["idx"], ranks[1][s]["idx"]], a[s]["idx"])
    other = next(iter(T.StepSampler(knn, 2, 4, seed=4, start=0, stop=1)))
    assert not np.array_equal(other["idx"], a[0]["idx"])
    with pytest.raises(DepthGError, match="divisible"):
        T.StepSampler(knn, 2, 4, 3, 0, 8, rank=0, world=3)


# ------------------------------------------------------------------------------ resume

def test_resume_after_interruption_logs_the_same_numbers(tmp_path, monkeypatch):
    p = tiny_profile()
    whole = T.train(p, tmp_path / "whole", device="cpu", data=tiny_data(), progress=False)
    assert whole.name == "final.pt" and whole.exists()

    real_step = T.Trainer.step

    def crash_at_3(self, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_step(self, step, *args)

    monkeypatch.setattr(T.Trainer, "step", crash_at_3)
    with pytest.raises(KeyboardInterrupt):
        T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False)
    monkeypatch.setattr(T.Trainer, "step", real_step)
    assert torch.load(tmp_path / "cut/checkpoints/last.pt")["step"] == 2
    assert not (tmp_path / "cut/checkpoints/final.pt").exists()
    with pytest.raises(DepthGError, match="--resume"):  # no silent restart over a partial run
        T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False)
    T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False, resume=True)

    rows_a, rows_b = (read_rows(tmp_path / d, untrained=True) for d in ("whole", "cut"))
    # one row for the untrained head (kept, not repeated, by the resume), then every step
    assert [r["step"] for r in rows_b] == [str(s) for s in range(-1, 6)]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for col in LOSS_COLUMNS:
            assert ra[col] == rb[col], (ra["step"], col)  # bit-identical
    assert rows_a[3]["val_linear_acc"] != ""  # validation at steps 3 and 6
    sa = torch.load(whole, weights_only=True)
    sb = torch.load(tmp_path / "cut/checkpoints/final.pt", weights_only=True)
    for k in sa["head"]:
        assert torch.equal(sa["head"][k], sb["head"][k])
    assert sa["schedule"] == sb["schedule"]
    # a finished run is not repeated
    assert T.train(p, tmp_path / "whole", device="cpu", data=tiny_data(),
                   progress=False) == whole


def test_checkpoint_holds_what_evaluation_needs(tmp_path):
    p = tiny_profile(steps=2)
    path = T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    state = torch.load(path, weights_only=True)
    for key in ("format", "profile", "step", "backbone", "backbone_dim", "patch_size",
                "code_dim", "n_classes", "head", "cluster_probe", "linear_probe", "optimizers",
                "schedule", "rng"):
        assert key in state
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 2
    assert state["profile"] == portable_profile(p)
    model = load_checkpoint(path, profile=p)
    images = torch.from_numpy(tiny_crops(2, 5).images).permute(0, 3, 1, 2)[:, :, :32, :32]
    codes = model.codes(images)
    assert codes.shape == (2, 8, 4, 4) and torch.isfinite(codes).all()
    with pytest.raises(DepthGError, match="code_dim"):
        load_checkpoint(path, profile=p.replace(dim=16))
    with pytest.raises(DepthGError, match="backbone"):
        load_checkpoint(path, profile=p.replace(backbone="vit_small_patch8_224.dino"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DepthGError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------ NaN

def test_nan_loss_stops_with_step_and_term_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = T.trainer.depthg_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # step 3
            out = dict(out)
            out["pos_inter"] = out["pos_inter"] * float("nan")
            out["total"] = out["total"] + out["pos_inter"]
        return out

    monkeypatch.setattr(T.trainer, "depthg_loss", poisoned)
    with pytest.raises(DepthGError, match=r"step 3.*'pos_inter'.*step 2"):
        T.train(tiny_profile(), tmp_path, device="cpu", data=tiny_data(), progress=False)
    last = torch.load(tmp_path / "checkpoints/last.pt", weights_only=True)
    assert last["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["head"].values())
    rows = read_rows(tmp_path)
    assert rows[-1]["step"] == "3" and rows[-1]["pos_inter"] == "nan"


# ------------------------------------------------------------------------------ features

def test_feature_cache_is_built_once_and_trains_like_the_live_path(tmp_path):
    p = tiny_profile(steps=3)
    live = T.train(p, tmp_path / "live", device="cpu", data=tiny_data(), progress=False)
    cache_dir = tmp_path / "features"
    pc = p.replace(precompute_features=True)
    cached = T.train(pc, tmp_path / "cached", device="cpu",
                     data=tiny_data(cache_dir=cache_dir), progress=False)
    feats = np.load(cache_dir / "feats_train.npy", mmap_mode="r")
    assert feats.dtype == np.float16 and feats.shape[0] == N_CROPS and feats.shape[2:] == (4, 4)
    stamp = (cache_dir / "feats_train.npy").stat().st_mtime_ns
    T.train(pc, tmp_path / "again", device="cpu", data=tiny_data(cache_dir=cache_dir),
            progress=False)
    assert (cache_dir / "feats_train.npy").stat().st_mtime_ns == stamp  # reused, not rebuilt
    a, b = read_rows(tmp_path / "live"), read_rows(tmp_path / "cached")
    for ra, rb in zip(a, b):  # fp16 features: same run up to rounding
        for col in ("pos_intra", "pos_inter", "loss", "linear_loss"):
            assert math.isclose(float(ra[col]), float(rb[col]), rel_tol=2e-2, abs_tol=2e-3)
    assert torch.load(live)["step"] == torch.load(cached)["step"] == 3


def test_feature_cache_over_budget_is_refused(tmp_path):
    p = tiny_profile(steps=1, precompute_features=True, feature_cache_gb=1e-6)
    with pytest.raises(DepthGError, match="feature_cache_gb"):
        T.train(p, tmp_path, device="cpu", data=tiny_data(cache_dir=tmp_path / "f"),
                progress=False)


def test_a_complete_feature_cache_is_reused_on_a_full_disk(tmp_path, monkeypatch):
    p = tiny_profile(steps=1, precompute_features=True)
    data = tiny_data(cache_dir=tmp_path / "f")
    T.train(p, tmp_path / "a", device="cpu", data=data, progress=False)
    monkeypatch.setattr("depthg_lib.features.free_bytes", lambda folder: 0)
    T.train(p, tmp_path / "b", device="cpu", data=data, progress=False)  # no room needed
    with pytest.raises(DepthGError, match="only 0.00 GB are free"):  # a cache to build: room
        T.train(p, tmp_path / "c", device="cpu", data=tiny_data(cache_dir=tmp_path / "g"),
                progress=False)


# ------------------------------------------------------------------------------ bad input

def test_sample_grid_larger_than_feature_grid_is_refused(tmp_path):
    p = tiny_profile(samples=5, fps_min_samples=4)  # 32 px / patch 8 = 4×4 grid
    with pytest.raises(DepthGError, match="larger than the 4×4 feature grid"):
        T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    assert not (tmp_path / "train.json").exists()  # refused: no record to --force past
    T.train(p.replace(samples=4), tmp_path, device="cpu", data=tiny_data(), progress=False,
            steps=1)  # the fixed profile trains in the same folder, no --force


def test_missing_backbone_weights_is_one_clear_error(tmp_path):
    p = tiny_profile(backbone="vit_small_patch8_224.dino",
                     backbone_weights=str(tmp_path / "dino_vits8.pth"))
    with pytest.raises(DepthGError, match="dino_vits8.pth"):
        T.train(p, tmp_path / "run", device="cpu", data=tiny_data(), progress=False)


def test_stage_run_before_its_prerequisites_names_the_command(tmp_path):
    p = tiny_profile(data_root=str(tmp_path / "data"))
    with pytest.raises(DepthGError, match="python -m depthg_lib.crop --profile"):
        T.train(p, tmp_path / "run", device="cpu", progress=False)
    crop_dir = p.paths.crop_dir
    crop_dir.mkdir(parents=True)
    (crop_dir / "train_names.txt").write_text("0\timg0\n1\timg0\n")
    with pytest.raises(DepthGError, match="python -m depthg_lib.knn --profile"):
        T.train(p, tmp_path / "run", device="cpu", progress=False)


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    T.train(tiny_profile(steps=1), tmp_path, device="cpu", data=tiny_data(), progress=False)
    with pytest.raises(DepthGError, match="--force"):
        T.train(tiny_profile(steps=1, lr=1e-3), tmp_path, device="cpu", data=tiny_data(),
                progress=False)


@pytest.mark.parametrize("changes", [
    dict(fidelity="released"),  # 0..255 depth, transposed FPS points, S decay at step 0
    dict(fidelity="released", sampling="random", use_depth=False, fps_sample_decay=False),
    dict(fidelity="corrected", sampling="random", pointwise=False, stabilize=True),
])
def test_profile_variants_train(tmp_path, changes):
    p = tiny_profile(steps=2, val_every=2, **changes)
    T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    rows = read_rows(tmp_path)
    assert all(math.isfinite(float(r["total"])) for r in rows)
    if changes["fidelity"] == "released" and p.fps_sample_decay:
        assert [r["samples"] for r in rows] == ["3", "2"]  # decayed right after step 0
    if not p.use_depth:
        assert all(float(r["depth"]) == 0.0 for r in rows)


def test_training_figures_read_the_log(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from depthg_lib.viz.training import plot_training, read_log

    T.train(tiny_profile(steps=3), tmp_path, device="cpu", data=tiny_data(), progress=False)
    log = read_log(tmp_path)
    assert list(log["step"]) == [-1, 0, 1, 2] and np.isfinite(log["total"][1:]).all()
    # the untrained head's row holds scores only; then validation after step 3 only
    assert np.isnan(log["total"][0]) and np.isfinite(log["val_linear_miou"]).sum() == 2
    fig = plot_training(log, title="tiny")
    assert len(fig.axes) == 5  # four panels + the twin axis of the schedule
    scores = [line for line in fig.axes[3].lines if line.get_label() == "cluster mIoU"]
    assert list(scores[0].get_xdata()) == [0, 3]  # against updates done: starts untrained
    with pytest.raises(DepthGError, match="train first"):
        read_log(tmp_path / "nowhere")


def test_checkpoint_trained_on_other_default_weights_is_refused(tmp_path, monkeypatch):
    import depthg_lib.checkpoint as ckpt_mod
    from depthg_lib.models import DepthGModel

    path = tmp_path / "ckpt.pt"
    state = {"format": ckpt_mod.CHECKPOINT_FORMAT, "profile": {"name": "demo"},
             "backbone": "embedded", "backbone_dim": 8, "code_dim": 4, "n_classes": 3,
             "backbone_weights_identity": "sha256:old"}
    model = DepthGModel(8, 4, 3, 0, True, True)
    state.update(head=model.head.state_dict(), cluster_probe=model.cluster_probe.state_dict(),
                 linear_probe=model.linear_probe.state_dict())
    torch.save(state, path)
    monkeypatch.setattr(ckpt_mod, "weights_identity", lambda name, weights: "sha256:new")
    with pytest.raises(DepthGError, match="other embedded weights.*sha256:old.*sha256:new"):
        ckpt_mod.load_checkpoint(path)
    monkeypatch.setattr(ckpt_mod, "weights_identity", lambda name, weights: "sha256:old")
    assert ckpt_mod.load_checkpoint(path).backbone_name == "embedded"


# ------------------------------------------------------------------------------ refusals and resume

def test_wrong_n_classes_is_refused_before_any_work(tmp_path):
    data = tiny_data()  # labels 0..3
    with pytest.raises(DepthGError, match=r"class id 3 .*n_classes: 2"):
        T.train(tiny_profile(n_classes=2), tmp_path / "a", device="cpu", data=data,
                progress=False)
    counted = dataclasses.replace(data, n_classes=12)  # what open_train_data reads
    with pytest.raises(DepthGError, match=r"n_classes: 4 .* has 12 classes.*`n_classes: 12`"):
        T.train(tiny_profile(), tmp_path / "b", device="cpu", data=counted, progress=False)
    assert not list(tmp_path.rglob("log.csv")) and not list(tmp_path.rglob("*.pt"))


def test_previous_checkpoint_is_kept_and_resume_survives_a_truncated_last(tmp_path,
                                                                          monkeypatch):
    p = tiny_profile()
    whole = T.train(p, tmp_path / "whole", device="cpu", data=tiny_data(), progress=False)
    assert torch.load(whole.with_name("previous.pt"), weights_only=True)["step"] == 4

    real_step = T.Trainer.step

    def crash_at_5(self, step, *args):
        if step == 5:
            raise KeyboardInterrupt
        return real_step(self, step, *args)

    monkeypatch.setattr(T.Trainer, "step", crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False)
    monkeypatch.setattr(T.Trainer, "step", real_step)
    last = tmp_path / "cut/checkpoints/last.pt"
    assert torch.load(last.with_name("previous.pt"), weights_only=True)["step"] == 2
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a write cut short
    with pytest.raises(DepthGError, match="step 2.*--resume"):  # names what is left
        T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False)
    final = T.train(p, tmp_path / "cut", device="cpu", data=tiny_data(), progress=False,
                    resume=True)
    rows_a, rows_b = read_rows(tmp_path / "whole"), read_rows(tmp_path / "cut")
    assert [r["step"] for r in rows_b] == [str(s) for s in range(6)]
    for ra, rb in zip(rows_a, rows_b):
        for col in LOSS_COLUMNS:
            assert ra[col] == rb[col], (ra["step"], col)  # resumed from step 2 exactly
    sa, sb = torch.load(whole, weights_only=True), torch.load(final, weights_only=True)
    assert all(torch.equal(sa["head"][k], sb["head"][k]) for k in sa["head"])


def test_finished_run_hint_works_when_followed(tmp_path):
    p = tiny_profile(steps=4)
    T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    with pytest.raises(DepthGError) as err:  # fewer steps than were trained
        T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, steps=2)
    message = str(err.value)
    assert f"--out {tmp_path} --steps 4`" in message and "--resume --steps 2" not in message
    assert T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, steps=4).exists()
    with pytest.raises(DepthGError, match="--resume --steps 6`"):  # more: continue it
        T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, steps=6)
    T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, steps=6, resume=True)


def test_other_crops_in_memory_are_refused_without_force(tmp_path):
    p = tiny_profile(steps=1)
    T.train(p, tmp_path, device="cpu", data=tiny_data(seed=0), progress=False)
    with pytest.raises(DepthGError, match=r"train\.json.*crops held in memory.*--force"):
        T.train(p, tmp_path, device="cpu", data=tiny_data(seed=1), progress=False)
    T.train(p, tmp_path, device="cpu", data=tiny_data(seed=1), progress=False, force=True)


# -- the stages on disk: a regenerated dataset, then train ------------------------------------

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two tiny SynthScenes folders (seeds 3 and 4), rendered once; tests copy them."""
    from depthg_lib.data.synthscenes import generate

    root = tmp_path_factory.mktemp("scenes")
    for seed in (3, 4):
        generate(root / f"seed{seed}", 3, 1, 32, seed=seed, progress=False)
    return root


def _disk_profile(data_root, **changes):
    values = dict(data_root=str(data_root), dataset_dir="ss", synth_n_train=3, synth_n_val=1,
                  synth_size=32, synth_seed=3, depth_backend="gt", knn_res=16, knn_k=2,
                  knn_store=4, backbone="embedded-random", res=16, samples=2, fps_min_samples=2,
                  batch_size=4, steps=2, val_every=2, checkpoint_every=2, dim=8, num_workers=0,
                  precompute_features=True, val_images=0)
    values.update(changes)
    return load_profile("test").replace(**values)


def _prepare(profile, force=False):
    from depthg_lib.crop import run_crop_stage
    from depthg_lib.depth import run_depth_stage
    from depthg_lib.knn import run_knn_stage

    run_depth_stage(profile, force=force, progress=False)
    run_crop_stage(profile, split="all", force=force, progress=False)
    run_knn_stage(profile, device="cpu", force=force, progress=False)


def test_regenerated_crops_then_train_refuses_or_redoes_never_stale(scenes, tmp_path):
    import shutil

    from depthg_lib import features as featcache
    from depthg_lib.crop import CropReader, run_crop_stage
    from depthg_lib.depth import run_depth_stage
    from depthg_lib.knn import run_knn_stage

    shutil.copytree(scenes / "seed3", tmp_path / "data" / "ss")
    p = _disk_profile(tmp_path / "data")
    _prepare(p)
    with pytest.raises(DepthGError, match=r"n_classes: 4 .* has 12 classes"):  # before work
        T.train(p.replace(n_classes=4), tmp_path / "wrong", device="cpu", progress=False)
    assert not (tmp_path / "wrong" / "train.json").exists()
    out = tmp_path / "run"
    T.train(p, out, device="cpu", progress=False)
    # a new dataset (another seed), depth and crops redone: same folders, same counts
    root = p.paths.dataset_dir
    for sub in ("imgs", "labels", "depth_gt", "instances"):
        shutil.rmtree(root / sub)
        shutil.copytree(scenes / "seed4" / sub, root / sub)
    shutil.copy(scenes / "seed4" / "synthscenes.json", root / "synthscenes.json")
    run_depth_stage(p, force=True, progress=False)
    run_crop_stage(p, split="all", force=True, progress=False)
    with pytest.raises(DepthGError, match="knn --profile test --split train --force"):
        T.train(p, out, device="cpu", progress=False)  # neighbours of the old crops
    run_knn_stage(p, device="cpu", force=True, progress=False)
    with pytest.raises(DepthGError) as err:  # the finished run was made from the old crops
        T.train(p, out, device="cpu", progress=False)
    message = str(err.value)
    assert "train.json" in message and "crops" in message
    assert f"python -m depthg_lib.train --profile test --out {out} --force" in message
    T.train(p, out, device="cpu", progress=False, force=True)
    crops = CropReader.from_profile(p, "train")
    data = T.open_train_data(p)
    cache = featcache.CachedSplit(data.cache_dir, "train")
    for n in range(len(crops)):  # what training read: the new crops' labels
        np.testing.assert_array_equal(cache.labels[n],
                                      featcache.prepare_crop(*crops.load(n), 16, p.fidelity)[1])


def test_checkpoint_names_its_profile_relative_to_the_repository(tmp_path):
    """A checkpoint made from a shipped profile must not carry this machine's absolute path."""
    from depthg_lib.config import load_profile

    profile = load_profile("test")
    assert Path(profile.source).is_absolute()
    assert portable_profile(profile)["source"] == "depthg_lib/profiles/test.yaml"
    outside = dataclasses.replace(profile, source=str(tmp_path / "mine.yaml"))
    assert portable_profile(outside)["source"] == str(tmp_path / "mine.yaml")


def test_validation_hands_the_model_back_in_training_mode():
    from depthg_lib.models import DepthGModel
    from depthg_lib.train.validation import Validation

    class Cached:  # a feature cache's split: 5 crops of 8-dim 4×4 features, 32×32 labels
        rng = np.random.default_rng(0)
        feats = rng.normal(size=(5, 8, 4, 4)).astype(np.float16)
        labels = rng.integers(0, 4, (5, 32, 32)).astype(np.uint8)

        def __len__(self):
            return 5

    p = tiny_profile()
    cached = Cached()
    model = DepthGModel(8, p.dim, p.n_classes)
    scores = Validation(p, [0] * 5, cached, None, torch.device("cpu"))(model)
    assert model.training and all(m.training for m in model.modules())  # dropout on again
    assert 0 <= scores["val_linear_acc"] <= 100


def test_validation_including_the_untrained_heads_changes_nothing_in_training(tmp_path):
    data = tiny_data()
    with_val = T.train(tiny_profile(), tmp_path / "val", device="cpu", data=data,
                       progress=False)
    without = T.train(tiny_profile(), tmp_path / "none", device="cpu",
                      data=dataclasses.replace(data, val=None, key="tiny-0-noval"),
                      progress=False)
    a, b = torch.load(with_val, weights_only=True), torch.load(without, weights_only=True)
    for k in a["head"]:
        assert torch.equal(a["head"][k], b["head"][k]), k
    assert read_rows(tmp_path / "val", untrained=True)[0]["val_cluster_miou"] != ""
    assert read_rows(tmp_path / "none", untrained=True)[0]["step"] == "0"  # no extra row


# -- a damaged checkpoint: resume from the intact one beside it --------------------------------

def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("steps", [2, 4])  # one checkpoint (no previous.pt), or two
def test_truncated_last_of_a_finished_run_resumes_from_the_intact_one(tmp_path, capsys, steps):
    p = tiny_profile(steps=steps, checkpoint_every=2)
    final = T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    last = final.with_name("last.pt")
    _cut(last)
    capsys.readouterr()
    again = T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, resume=True)
    note = capsys.readouterr().err.strip().splitlines()
    assert len(note) == 1 and "truncated or damaged" in note[0] and "final.pt" in note[0]
    assert "miniz" not in note[0]
    assert torch.load(last, weights_only=True)["step"] == steps  # written again, whole
    assert torch.load(again, weights_only=True)["step"] == steps


def test_no_intact_checkpoint_is_one_short_error_naming_the_fix(tmp_path):
    p = tiny_profile(steps=4, checkpoint_every=2)
    final = T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    for name in ("last.pt", "previous.pt", "final.pt"):
        _cut(final.with_name(name))
    with pytest.raises(DepthGError) as err:
        T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False, resume=True)
    message = str(err.value)
    assert "no intact checkpoint" in message and "--force" in message
    assert "miniz" not in message and len(message) < 400
    with pytest.raises(DepthGError) as err:  # a damaged final.pt read alone names --resume
        T.train(p, tmp_path, device="cpu", data=tiny_data(), progress=False)
    assert "truncated or damaged" in str(err.value) and "miniz" not in str(err.value)
