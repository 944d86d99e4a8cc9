"""A forced depth or crop run interrupted part-way leaves the outputs of the last complete run
with the record that describes them, byte for byte; the same forced command then continues
where it stopped and swaps the whole new set in (`io.replaced_outputs`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from depthg_lib import io
from depthg_lib.config import REPO_ROOT, load_profile
from depthg_lib.crop import CropReader, require_current_crops, run_crop_stage
from depthg_lib.data.readers import SynthScenesReader
from depthg_lib.data.synthscenes import generate
from depthg_lib.depth import run_depth_stage
from depthg_lib.errors import DepthGError

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("children_hear_sigint")
N_TRAIN, N_VAL, SIZE = 3, 1, 32


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    generate(root / "ss", N_TRAIN, N_VAL, SIZE, seed=3, progress=False)
    return root


@pytest.fixture
def gt(scenes, tmp_path):
    """A profile whose depth maps come from ground truth, on a fresh copy of the dataset."""
    shutil.copytree(scenes / "ss", tmp_path / "data" / "ss")
    return load_profile("test", data_root=str(tmp_path / "data"), dataset_dir="ss",
                        synth_n_train=N_TRAIN, synth_n_val=N_VAL, synth_size=SIZE,
                        synth_seed=3, depth_backend="gt")


def _synth(profile):
    return profile.replace(depth_backend="synth", depth_model="random", depth_batch=1)


def _files(folder):
    """Every file under `folder` (relative name → bytes), the lock file aside."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _interrupt_on_load(monkeypatch, after):
    """Ctrl-C once `after` images have been read (patched on the reader class, so whatever
    module runs the stage's loop)."""
    real, calls = SynthScenesReader.load_image, []

    def load_image(self, split, name):
        if len(calls) >= after:
            raise KeyboardInterrupt
        calls.append(name)
        return real(self, split, name)

    monkeypatch.setattr(SynthScenesReader, "load_image", load_image)


def _maps(folder):
    return [p for p in folder.rglob("*.png") if not p.name.startswith(".")]  # no temp files


def _leftovers(folder):
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


def test_an_interrupted_forced_depth_run_keeps_the_old_maps_and_record(gt, monkeypatch):
    out = run_depth_stage(gt, progress=False)
    before = _files(out)
    assert "depth.json" in before and len(before) == 1 + N_TRAIN + N_VAL

    _interrupt_on_load(monkeypatch, after=2)
    with pytest.raises(KeyboardInterrupt):
        run_depth_stage(_synth(gt), force=True, progress=False, device="cpu")
    monkeypatch.undo()
    assert _files(out) == before  # maps and record byte-identical
    begun = out.parent / f".{out.name}.new"
    made = {p.relative_to(begun): p.stat().st_mtime_ns for p in begun.rglob("*.png")}
    assert 0 < len(made) < N_TRAIN + N_VAL  # part of the new set, beside the old one

    # the next plain command: the old maps are still valid for their profile ...
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert run_depth_stage(gt, progress=False) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps
    run_crop_stage(gt, split="all", progress=False)  # and crop accepts them
    # ... and the new backend without --force is refused, naming the command
    with pytest.raises(DepthGError, match="--force"):
        run_depth_stage(_synth(gt), progress=False, device="cpu")

    # the forced command again: continues in the new folder, then swaps every map in
    run_depth_stage(_synth(gt), force=True, progress=False, device="cpu")
    after = _files(out)
    assert set(after) == set(before) and after["depth.json"] != before["depth.json"]
    assert all(after[name] != before[name] for name in before if name.endswith(".png"))
    assert {rel: (out / rel).stat().st_mtime_ns for rel in made} == made  # not redone
    assert _leftovers(out) == []
    with pytest.raises(DepthGError, match="depth"):  # the crops of the old maps: refused
        require_current_crops(_synth(gt), "train", "kNN")


def test_a_forced_depth_run_of_one_split_keeps_the_other(gt):
    out = run_depth_stage(gt, progress=False)
    before = _files(out)
    run_depth_stage(gt, split="train", force=True, progress=False)
    after = _files(out)
    assert after == before  # same settings: same maps; val kept, record with both splits
    run_crop_stage(gt, split="all", progress=False)
    require_current_crops(gt, "val", "kNN")


def test_an_interrupted_forced_crop_run_keeps_the_old_crops_and_record(gt, monkeypatch):
    run_depth_stage(gt, progress=False)
    crop_dir = run_crop_stage(gt, split="all", progress=False)
    before = _files(crop_dir)
    run_depth_stage(_synth(gt), force=True, progress=False, device="cpu")
    with pytest.raises(DepthGError, match="crop --profile test --split all --force"):
        run_crop_stage(_synth(gt), split="all", progress=False)

    _interrupt_on_load(monkeypatch, after=2)
    with pytest.raises(KeyboardInterrupt):
        run_crop_stage(_synth(gt), split="all", force=True, progress=False)
    monkeypatch.undo()
    assert _files(crop_dir) == before  # crops, names files and crop.json byte-identical
    assert len(CropReader(crop_dir, "train")) == 5 * N_TRAIN

    # the next plain command still refuses the old crops, naming the forced one ...
    with pytest.raises(DepthGError, match="crop --profile test --split all --force"):
        run_crop_stage(_synth(gt), split="all", progress=False)
    # ... which replaces them all, and kNN and training accept what it made
    run_crop_stage(_synth(gt), split="all", force=True, progress=False)
    after = _files(crop_dir)
    assert set(after) == set(before) and after["crop.json"] != before["crop.json"]
    changed = [n for n in before if n.startswith("depth/")]
    assert changed and all(after[n] != before[n] for n in changed)
    assert _leftovers(crop_dir) == []
    for split in ("train", "val"):
        require_current_crops(_synth(gt), split, "kNN")


def test_a_kill_between_the_two_renames_is_undone_by_the_next_run(tmp_path):
    live = tmp_path / "out"
    (live / "sub").mkdir(parents=True)
    (live / "sub" / "a.png").write_bytes(b"old")
    io.write_stage_record(live, "demo", {"k": 1})
    before = _files(live)
    with io.stage_lock(live, "demo"):
        io.check_stage_settings(live, "demo", {"k": 2}, force=True, write=False)
        with io.replaced_outputs(live, "demo", {"k": 2}) as new:
            (new / "sub").mkdir()
            (new / "sub" / "a.png").write_bytes(b"new")
    assert (live / "sub" / "a.png").read_bytes() == b"new" and _leftovers(live) == []

    (live / "sub" / "a.png").write_bytes(b"old")
    io.write_stage_record(live, "demo", {"k": 1})
    live.rename(tmp_path / ".out.old")  # killed after the first rename
    with io.stage_lock(live, "demo"):
        assert _files(live) == before  # the old outputs are back, whole
    shutil.copytree(live, tmp_path / ".out.old")  # killed after the second rename
    with io.stage_lock(live, "demo"):
        assert _files(live) == before and _leftovers(live) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_real_signal_to_a_forced_depth_run_keeps_the_old_maps(tmp_path, sig):
    """The depth command, stopped for real once part of its new maps exist; then the same
    command finishes the job."""
    profile_file = tmp_path / "tiny.yaml"
    profile_file.write_text(f"extends: test\ndata_root: {tmp_path / 'data'}\n"
                            "synth_n_train: 48\nsynth_n_val: 0\ndepth_batch: 1\n")
    profile = load_profile(profile_file)
    generate(profile.paths.dataset_dir, 48, 0, profile.synth_size, seed=3, progress=False)
    out = run_depth_stage(profile.replace(depth_backend="gt"), progress=False)
    before = _files(out)
    command = [sys.executable, "-m", "depthg_lib.depth", "--profile", str(profile_file),
               "--force", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    begun = out.parent / f".{out.name}.new"
    deadline = time.monotonic() + 300
    while proc.poll() is None and not _maps(begun):
        assert time.monotonic() < deadline, "the forced depth run never wrote a map"
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be stopped part-way"
    proc.send_signal(sig)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert _files(out) == before  # the old maps and depth.json, byte for byte
    assert 0 < len(_maps(begun)) < 48

    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    after = _files(out)
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)
    assert _leftovers(out) == []


def test_the_same_forced_run_continues_in_its_folder_and_other_settings_start_afresh(tmp_path):
    live = tmp_path / "out"
    io.write_stage_record(live, "demo", {"k": 1})
    for found in (["demo.json"], ["a.png", "demo.json"]):  # interrupted twice, same settings
        with pytest.raises(KeyboardInterrupt), io.replaced_outputs(live, "demo", {"k": 2}) as new:
            assert sorted(p.name for p in new.iterdir()) == found
            (new / "a.png").write_bytes(b"new")
            (new / ".b.png.x1y2.tmp.png").write_bytes(b"half")  # a write cut short by a kill
            raise KeyboardInterrupt
        assert io.load_json(live / "demo.json") == {"k": 1}
    with io.replaced_outputs(live, "demo", {"k": 2}) as new:
        assert sorted(p.name for p in new.iterdir()) == ["a.png", "demo.json"]
    assert io.load_json(live / "demo.json") == {"k": 2}
    (tmp_path / ".out.new").mkdir()
    (tmp_path / ".out.new" / "c.png").write_bytes(b"of k=2")
    io.write_stage_record(tmp_path / ".out.new", "demo", {"k": 2})
    with io.replaced_outputs(live, "demo", {"k": 3}) as new:  # begun for other settings
        assert sorted(p.name for p in new.iterdir()) == ["demo.json"]
    assert sorted(p.name for p in live.iterdir()) == ["demo.json"]
