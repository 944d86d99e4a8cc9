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


@pytest.mark.parametrize("steps", [300, 1500])
def test_schedules_as_a_share_keep_the_released_proportions(steps):
    """depth_decay_share 0.05 and fps_sample_decay_share 0.2 (COCO-Stuff: 250 and 1,000 of
    5,000 steps): whatever the run's length, the depth weight has decayed four times after
    the first fifth of the run, and the sample count once."""
    from depthg_lib.train.trainer import Schedule

    base = load_profile("study").replace(samples=8, fps_min_samples=4)
    variant = ablation.arm_profile(base, "depthg-corrected", steps=steps)
    assert variant.depth_decay_every == steps // 20
    assert variant.fps_sample_decay_every == steps // 5
    sched = Schedule.start(variant)
    for step in range(steps // 5 + 1):  # the decays due after steps 0 .. steps/5
        sched.advance(step, variant)
    assert sched.weight_depth == pytest.approx(base.weight_depth * base.depth_decay_factor ** 4)
    assert sched.samples == int(8 * base.fps_sample_decay_factor)
    # without a share the steps are the profile's, whatever the run's length
    fixed = ablation.arm_profile(base.replace(depth_decay_share=0.0, fps_sample_decay_share=0.0),
                                 "depthg-corrected", steps=steps)
    assert (fixed.depth_decay_every, fixed.fps_sample_decay_every) == (
        base.depth_decay_every, base.fps_sample_decay_every)
