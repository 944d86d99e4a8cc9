"""The factorial's arms: each differs from its STEGO partner only in the ingredient under test."""

import dataclasses

import pytest

from depthg_lib import ablation
from depthg_lib.config import load_profile
from depthg_lib.errors import DepthGError


def _changed(a, b) -> set[str]:
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    return {k for k in da if da[k] != db[k]}


def test_arms_are_the_two_by_two_in_both_fidelities():
    assert len(ablation.ARMS) == 8
    factors = {ablation.arm_factors(a) for a in ablation.ARMS}
    assert factors == {(d, f, fid) for d in (False, True) for f in (False, True)
                       for fid in ("released", "corrected")}
    assert ablation.stego_partner("fps-released") == "stego-released"
    with pytest.raises(DepthGError, match="unknown arm 'deeplab-corrected'"):
        ablation.arm_factors("deeplab-corrected")


def test_each_arm_changes_only_its_ingredient():
    base = load_profile("test")
    arm = {a: ablation.arm_profile(base, a, steps=7) for a in ablation.ARMS}
    assert _changed(arm["stego-corrected"], arm["depth-corrected"]) == {"use_depth"}
    assert _changed(arm["stego-corrected"], arm["fps-corrected"]) == {"sampling"}
    assert _changed(arm["stego-corrected"], arm["depthg-corrected"]) == {"use_depth",
                                                                         "sampling"}
    assert _changed(arm["depthg-released"], arm["depthg-corrected"]) == {"fidelity"}
    # the sample-count schedule is the profile's in every arm, not part of an ingredient
    assert {p.fps_sample_decay for p in arm.values()} == {base.fps_sample_decay}
    assert {(p.steps, p.val_every) for p in arm.values()} == {(7, 7)}
    assert ablation.arm_profile(base.replace(ablation_steps=5), "stego-corrected").steps == 5


def test_run_arm_reuses_resumes_or_restarts(tmp_path, monkeypatch):
    calls = []

    def fake_train(profile, out_dir, seed, **kwargs):
        calls.append((kwargs["force"], kwargs["resume"]))
        return out_dir / "checkpoints" / "final.pt"

    monkeypatch.setattr(ablation, "train", fake_train)
    variant = ablation.arm_profile(load_profile("test"), "stego-corrected", steps=3)
    ablation.run_arm(variant, tmp_path, seed=0)
    assert calls[-1] == (False, False)  # fresh folder
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    ablation.run_arm(variant, tmp_path, seed=0)
    assert calls[-1] == (False, True)  # interrupted: resume
    monkeypatch.setattr(ablation, "recorded_settings_differ", lambda *a, **k: True)
    ablation.run_arm(variant, tmp_path, seed=0)
    assert calls[-1] == (True, False)  # other settings in the folder: start over
