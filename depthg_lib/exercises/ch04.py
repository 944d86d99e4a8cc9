"""Exercises of chapter 04 · Train DepthG: their self-checks (`exercises.check("04.1", ...)`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..reference import clamped_loss, pair_loss
from ..sampling import fps_coords
from .core import Wrong, as_dict, as_tuple, call, close_to, register, written


@register("04.1", "dL_dC(C, F, s, zero_clamp): the gradient of L = −clamp(C, m)·(F − s) "
                   "with respect to C", "pen",
           "where the clamp is active (C < 0 with zero_clamp) the loss does not depend on C; "
           "elsewhere dL/dC = −(F − s)")
def _check_04_1(fn):
    for seed, zero_clamp in ((0, True), (1, False)):
        g = torch.Generator().manual_seed(seed)
        c, f = torch.rand((2, 2, 3, 3, 3, 3), generator=g, dtype=torch.float64) * 2 - 1
        c = c.requires_grad_()
        clamped_loss(c, f, 0.3, zero_clamp).sum().backward()
        got = call(fn, c.detach().clone(), f.clone(), 0.3, zero_clamp=zero_clamp)
        close_to(got, c.grad.numpy(), 1e-6, f"dL_dC (zero_clamp={zero_clamp})", mistakes={
            "with zero_clamp, pairs with C < 0 get no gradient: clamp(C, 0) is flat there":
                -(f - 0.3).numpy(),
            "the sign is flipped: L = −C·(F − s), so dL/dC = −(F − s)": (f - 0.3).numpy()})


@register("04.2", "fate(C, F, s): is a pair 'attracted', 'repelled' or 'ignored' by a "
                   "gradient step (zero_clamp on)?", "pen",
           "a descent step changes C by −η·dL/dC: up where F > s, down where F < s, not at all "
           "where C < 0 (or F = s)")
def _check_04_2(fn):
    cases = [(0.5, 0.9, 0.3, "attracted"), (0.5, 0.1, 0.3, "repelled"),
             (-0.4, 0.9, 0.3, "ignored"), (-0.4, 0.1, 0.3, "ignored"),
             (0.9, 0.6, 0.7, "repelled"), (0.05, 0.75, 0.7, "attracted"),
             (0.3, 0.4, 0.4, "ignored")]
    for c, f, s, want in cases:
        got = call(fn, c, f, s)
        if got != want:
            raise Wrong(f"C = {c}, F = {f}, s = {s}: you say {got!r}, a gradient step "
                         f"says {want!r}")


TOY_SHIFTS = (-0.5, 0.5, 1.5)
OUTCOMES = ("collapse", "separate", "scatter")


def toy_shift_outcome(shift: float, steps: int = 100, seed: int = 0) -> tuple[str, float, float]:
    """Chapter 04's two-region toy at one shift: (outcome, C within, C across). A 6×6 grid whose
    halves have F ≈ 1 within and ≈ 0 across; random 3-dim codes after `steps` Adam steps end
    `collapse`d (every pair similar), `separate` (within a half only) or `scatter`ed."""
    g = torch.Generator().manual_seed(seed)
    right = torch.zeros(1, 1, 6, 6)
    right[..., 3:] = 1
    f = torch.cat([1 - right, right], 1) * 3 + 0.5 * torch.randn(1, 2, 6, 6, generator=g)
    c = torch.randn(1, 3, 6, 6, generator=g).requires_grad_()
    # Adam written out (lr 0.05, betas 0.9/0.999): torch.optim's first use costs seconds
    m, v = torch.zeros_like(c), torch.zeros_like(c)
    for step in range(1, steps + 1):
        loss, cc = pair_loss(f, f, c, c, shift=shift, pointwise=False)
        (grad,) = torch.autograd.grad(loss.mean(), c)
        with torch.no_grad():
            m.mul_(0.9).add_(grad, alpha=0.1)
            v.mul_(0.999).addcmul_(grad, grad, value=0.001)
            c -= 0.05 * (m / (1 - 0.9 ** step)) / ((v / (1 - 0.999 ** step)).sqrt() + 1e-8)
    cc = cc.detach()[0].reshape(36, 36)
    same = right.flatten()[:, None] == right.flatten()[None, :]
    off = ~torch.eye(36, dtype=torch.bool)
    within, across = cc[same & off].mean().item(), cc[~same].mean().item()
    outcome = "collapse" if across > 0.5 else "separate" if within > 0.5 else "scatter"
    return outcome, within, across


@register("04.3", "Predict the toy's codes at shifts −0.5, 0.5 and 1.5: 'collapse', "
                   "'separate' or 'scatter'?", "experiment",
           "F ≈ 1 within a half and ≈ 0 across: where is F − s positive for each shift?")
def _check_04_3(answer):
    if not isinstance(answer, dict) or any(answer.get(s) is None for s in TOY_SHIFTS):
        raise Wrong(f"answer with a dict {{shift: outcome}} for the shifts {TOY_SHIFTS}, "
                     f"outcomes from {OUTCOMES}")
    with torch.random.fork_rng():
        for shift in TOY_SHIFTS:
            want, within, across = toy_shift_outcome(shift)
            if answer[shift] != want:
                raise Wrong(f"shift {shift}: the toy ends with C {within:.2f} within a half and "
                             f"{across:.2f} across — that is {want!r}, not {answer[shift]!r}")


@register("04.4", "cluster_probe(codes, centroids): (loss, assignment) of STEGO's cluster "
                   "probe", "code",
           "cosine = unit codes · unit centroids; assignment = argmax over centroids; loss = "
           "−mean over pixels of the best cosine")
def _check_04_4(fn):
    g = torch.Generator().manual_seed(12)
    codes = torch.randn(2, 5, 4, 3, generator=g) * torch.rand(2, 1, 4, 3, generator=g) * 4
    centroids = torch.randn(6, 5, generator=g) * torch.rand(6, 1, generator=g) * 4
    sim = torch.einsum("bchw,kc->bkhw", F.normalize(codes, dim=1), F.normalize(centroids, dim=1))
    dots = torch.einsum("bchw,kc->bkhw", codes, centroids)
    got = as_tuple(call(fn, codes.clone(), centroids.clone()), 2, "a pair (loss, assignment)")
    close_to(got[1], sim.argmax(1).numpy(), 0, "assignment", mistakes={
        "the assignment uses raw dot products: normalise codes and centroids":
            dots.argmax(1).numpy()})
    close_to(got[0], -sim.max(1).values.mean().item(), 1e-5, "loss")


@register("04.5", "Which changes of a depth map leave the FPS points unchanged: ×4, +0.5, "
                   "squaring?", "pen",
           "unproject: every 3D point is proportional to d; which change scales all distances "
           "by one factor?")
def _check_04_5(answer):
    a = as_dict(answer, ("scale", "offset", "square"))
    g = torch.Generator().manual_seed(13)
    depth = F.avg_pool2d(torch.rand(3, 1, 32, 32, generator=g), 4, 1, 0)
    base = fps_coords(depth, (8, 8), 4, fidelity="corrected")
    for name, changed in (("scale", depth * 4), ("offset", depth + 0.5), ("square", depth ** 2)):
        kept = torch.equal(base, fps_coords(changed, (8, 8), 4, fidelity="corrected"))
        if bool(a[name]) != kept:
            raise Wrong(f"{name}: FPS does {'' if kept else 'not '}keep its points "
                         f"(you said {bool(a[name])})")


@register("04.6", "effective_shift(w_intra, s_intra, w_depth, s_depth): the intra shift that "
                   "the released depth term (D ≡ 1) amounts to", "pen",
           "write w_i·L_intra + w_d·L_depth as w_i·(−clamp(C)·(F − s')) and solve for s'")
def _check_04_6(fn):
    for w_i, s_i, w_d, s_d in ((0.58, 0.70, 0.19, 0.12), (1.0, 0.07, 0.5, 0.5),
                               (0.3, 0.2, 0.9, -0.1)):
        close_to(call(fn, w_i, s_i, w_d, s_d), s_i - w_d * (1 - s_d) / w_i, 1e-6,
                 "effective_shift", mistakes={"divide the depth term's push by w_intra: it adds "
                                              "to w_intra·(F − s)": s_i - w_d * (1 - s_d)})


written("04.7", "What does each pair type (intra, kNN, negative) teach the head, and what "
                 "breaks without it?", "pen",
         "train the toy of §2 with only attractions; then think of two images of one class")
written("04.8", "Measure FPS's share of points on things at a larger S and with the released "
                 "(transposed) reading", "experiment",
         "fps_thing_share takes grid_hw and n; read the transposed points with fidelity "
         "'released' through depthg_lib.sampling.sample")
