"""Exercises of chapter 07 · What the evidence says: checks (`exercises.check("07.1", ...)`)."""

from __future__ import annotations

from types import SimpleNamespace

from ..config import load_profile
from ..evidence import depth_schedule, effective_intra_shift
from .core import Wrong, as_dict, call, close_to, register, written

PAPER_PROFILES = ("cityscapes-vitb8", "cocostuff27-vits8", "potsdam-vits8")


@register("07.1", "shift_at(step, w_intra, s_intra, w_depth, s_depth, every, factor): the intra "
                  "shift the released objective (D ≡ 1) amounts to at a training step", "code",
          "04.6's s′ with the decayed w_depth and s_depth; both are multiplied by `factor` "
          "AFTER each step k > 0 with k % every == 0, so step t has seen max(t − 1, 0) // every "
          "decays (none at t = 0 and t = 1)")
def _check_07_1(fn):
    cases = ((0.95, 0.39, 0.09, 0.03, 400, 0.8), (0.58, 0.07, 0.19, 0.03, 400, 0.8),
             (1.0, 0.2, 0.5, 0.1, 10, 0.5))
    for w_i, s_i, w_d, s_d, every, factor in cases:
        sched = SimpleNamespace(weight_depth=w_d, shift_depth=s_d, depth_decay_every=every,
                                depth_decay_factor=factor)
        for step in (0, 1, every, every + 1, 3 * every + 1, 17 * every):
            want = effective_intra_shift(w_i, s_i, *depth_schedule(sched, step))
            got = call(fn, step, w_i, s_i, w_d, s_d, every, factor)
            off = factor ** (step // every)
            close_to(got, want, 1e-6, f"shift_at(step={step}, every={every})", mistakes={
                f"step {step}, every {every}: the decay after step k is applied from step "
                "k + 1 on — step t has seen max(t − 1, 0) // every decays, not t // every":
                    effective_intra_shift(w_i, s_i, w_d * off, s_d * off)})


@register("07.2", "Where does depth enter each released paper configuration: in the loss "
                  "(a D that varies) and/or in the choice of points (FPS)?", "pen",
          "read the profiles' fidelity, use_depth and sampling (released D ≡ 1 carries no "
          "depth; FPS — even read transposed — depends on the depth map)")
def _check_07_2(answer):
    a = as_dict(answer, PAPER_PROFILES)
    for name in PAPER_PROFILES:
        p = load_profile(name)
        truth = {"loss": bool(p.use_depth and p.fidelity == "corrected"),
                 "points": p.sampling == "fps"}
        got = as_dict(a[name], ("loss", "points"))
        for where, value in truth.items():
            if bool(got[where]) != value:
                raise Wrong(f"{name}: depth does {'' if value else 'not '}enter the {where} "
                            f"(you said {bool(got[where])}) — read fidelity {p.fidelity!r}, "
                            f"use_depth {p.use_depth}, sampling {p.sampling!r}")


written("07.3", "Test the first hypothesis: STEGO with the intra shift s′ (07.1) against "
                "released DepthG, same seeds", "experiment",
        "train cfg.replace(use_depth=False, shift_intra=s′) and the released profile for three "
        "seeds each; compare the paired difference's interval with 0")
written("07.4", "Rank the hypotheses for the gap by cost of the test, and say which result "
                "would change your mind about each", "pen",
        "what does each test need — a GPU, a dataset, only the released checkpoint?")
