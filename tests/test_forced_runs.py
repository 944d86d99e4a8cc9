"""A forced depth or crop run interrupted part-way leaves its new record and the outputs it
finished; the plain command then continues where it stopped, and later stages accept the
result only once it is complete."""

from __future__ import annotations

import pytest
import torch

from depthg_lib.config import load_profile
from depthg_lib.crop import CropReader, require_current_crops, run_crop_stage
from depthg_lib.data.readers import SynthScenesReader
from depthg_lib.depth import run_depth_stage
from depthg_lib.errors import DepthGError

torch.set_num_threads(1)
N_TRAIN, N_VAL, SIZE = 3, 1, 32


@pytest.fixture
def gt(synth_data_root, tmp_path):
    """A profile whose depth maps come from ground truth, on a fresh copy of the dataset."""
    root = synth_data_root(tmp_path / "data", N_TRAIN, N_VAL, SIZE)
    return load_profile("test", data_root=str(root), dataset_dir="ss",
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


def test_an_interrupted_forced_depth_run_is_finished_by_the_plain_command(gt, monkeypatch):
    out = run_depth_stage(gt, progress=False)
    run_crop_stage(gt, split="all", progress=False)
    _interrupt_on_load(monkeypatch, after=2)
    with pytest.raises(KeyboardInterrupt):
        run_depth_stage(_synth(gt), force=True, progress=False, device="cpu")
    monkeypatch.undo()
    made = {p: p.stat().st_mtime_ns for p in _maps(out)}
    assert len(made) == 2  # the old maps are gone, two new ones are written
    with pytest.raises(DepthGError, match="needs depth maps first"):  # incomplete: refused
        run_crop_stage(_synth(gt), split="all", force=True, progress=False)

    run_depth_stage(_synth(gt), progress=False, device="cpu")  # no --force: it resumes
    assert len(_maps(out)) == N_TRAIN + N_VAL
    assert {p: p.stat().st_mtime_ns for p in made} == made  # not redone
    with pytest.raises(DepthGError, match="depth"):  # the crops of the old maps: refused
        require_current_crops(_synth(gt), "train", "kNN")


def test_an_interrupted_forced_crop_run_is_finished_by_the_plain_command(gt, monkeypatch):
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
    with pytest.raises(DepthGError, match="no finished train split"):
        CropReader(crop_dir, "train")  # half a set is never read as a whole one

    run_crop_stage(_synth(gt), split="all", progress=False)  # no --force: it resumes
    after = _files(crop_dir)
    assert set(after) == set(before) and after["crop.json"] != before["crop.json"]
    changed = [n for n in before if n.startswith("depth/")]
    assert changed and all(after[n] != before[n] for n in changed)
    for split in ("train", "val"):
        require_current_crops(_synth(gt), split, "kNN")
