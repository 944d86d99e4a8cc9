"""Benchmark: the DepthG objective forward + backward (or a full training step), library vs
the released loss structure, on random inputs of the given sizes.

    python benchmarks/train_step.py --device cpu --batch 32 --feat-dim 384 --grid 28 \\
        --code-dim 70 --samples 11 --sampling fps --neg-samples 5 --reps 5 --threads 2

With ``--backbone NAME`` the whole step is timed: frozen backbone on (B,3,G·p,G·p) images and
positives, head, loss, both probes, three Adam steps (random backbone weights: only the
time matters). The baseline is a reimplementation, written from docs/method.md §6–§7.1, of how the
released loss is structured: features and codes sampled per term with the transposed
sampler, every negative built by permuting the whole (B, D, h, w) maps and sampling them
again, FPS image by image in numpy, the depth term's code correlation computed a second
time. ``--json``: the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import add_versus_args, parse_versus_args, run_versus  # noqa: E402
from fps import random_depth, released_fps_coords  # noqa: E402

from depthg_lib.losses import LossSettings, depthg_loss  # noqa: E402

WEIGHTS = {"intra": 0.58, "inter": 0.36, "neg": 0.70, "depth": 0.19}  # cocostuff27-vits8
SHIFTS = {"intra": 0.07, "inter": 0.025, "neg": 0.761, "depth": 0.03}


# ------------------------------------------------------------- released loss structure

def _norm(t):
    return F.normalize(t, dim=1, eps=1e-10)


def _corr(a, b):
    return torch.einsum("nchw,ncij->nhwij", a, b)


def _released_sample(t, coords):
    return F.grid_sample(t, coords.permute(0, 2, 1, 3), padding_mode="border",
                         align_corners=True)


def _super_perm(size, device):
    perm = torch.randperm(size, device=device, dtype=torch.long)
    perm[perm == torch.arange(size, device=device)] += 1
    return perm % size


def _helper(f1, f2, c1, c2, shift):
    with torch.no_grad():
        fd = _corr(_norm(f1), _norm(f2))
        old_mean = fd.mean()
        fd -= fd.mean([3, 4], keepdim=True)
        fd = fd - fd.mean() + old_mean
    cd = _corr(_norm(c1), _norm(c2))
    return -cd.clamp(0) * (fd - shift), cd


def _depth_helper(c1, c2, d1, d2, shift):
    cd = _corr(_norm(c1), _norm(c2))
    dd = _corr(_norm(d1), _norm(d2))
    return -cd.clamp(0) * (dd - shift), dd


def released_objective(feats, feats_pos, code, code_pos, depth, depth_pos, s, sampling,
                       neg_samples):
    b, _, h, _ = feats.shape
    if sampling == "fps":
        coords1 = released_fps_coords(depth, h, s)
        coords2 = released_fps_coords(depth_pos, h, s)
    else:
        coords1 = torch.rand((b, s, s, 2), device=feats.device) * 2 - 1
        coords2 = torch.rand((b, s, s, 2), device=feats.device) * 2 - 1
    f1, c1 = _released_sample(feats, coords1), _released_sample(code, coords1)
    f2, c2 = _released_sample(feats_pos, coords2), _released_sample(code_pos, coords2)
    intra, _ = _helper(f1, f1, c1, c1, SHIFTS["intra"])
    inter, _ = _helper(f1, f2, c1, c2, SHIFTS["inter"])
    negs = []
    for _ in range(neg_samples):
        perm = _super_perm(b, feats.device)
        fn = _released_sample(feats[perm], coords2)
        cn = _released_sample(code[perm], coords2)
        negs.append(_helper(f1, fn, c1, cn, SHIFTS["neg"])[0])
    neg = torch.cat(negs, 0)
    d = F.interpolate(depth, (s, s), mode="bilinear", align_corners=True)
    dep, _ = _depth_helper(c1, c1, d, d, SHIFTS["depth"])
    return (WEIGHTS["intra"] * intra.mean() + WEIGHTS["inter"] * inter.mean()
            + WEIGHTS["neg"] * neg.mean() + WEIGHTS["depth"] * dep.mean())


def library_objective(feats, feats_pos, code, code_pos, depth, depth_pos, s, sampling,
                      neg_samples, fidelity="released"):
    settings = LossSettings(n_samples=s, sampling=sampling, fidelity=fidelity, weights=WEIGHTS,
                            shifts=SHIFTS, neg_samples=neg_samples)
    return depthg_loss(feats, feats_pos, code, code_pos, depth, depth_pos, settings)["total"]


# ------------------------------------------------------------------------- the steps

def loss_step_fn(objective, args, device):
    """fwd+bwd of the objective on fixed random maps (codes are the leaf that gets grads)."""
    gen = torch.Generator().manual_seed(0)
    b, g = args.batch, args.grid
    feats = torch.randn(b, args.feat_dim, g, g, generator=gen).to(device)
    feats_pos = torch.randn(b, args.feat_dim, g, g, generator=gen).to(device)
    code = torch.randn(b, args.code_dim, g, g, generator=gen).to(device).requires_grad_()
    code_pos = torch.randn(b, args.code_dim, g, g, generator=gen).to(device).requires_grad_()
    depth = random_depth(b, g * args.patch, device, seed=1)
    depth_pos = random_depth(b, g * args.patch, device, seed=2)

    def step():
        code.grad = code_pos.grad = None
        objective(feats, feats_pos, code, code_pos, depth, depth_pos, args.samples,
                  args.sampling, args.neg_samples).backward()
    return step


def full_step_fn(objective, args, device):
    """Backbone (frozen) → head → loss + probes → one backward → three Adam steps."""
    from depthg_lib.models import ClusterProbe, LinearProbe, SegmentationHead, load_backbone

    backbone = load_backbone(args.backbone, weights="random", device=device)
    p = backbone.patch_size
    b, g, size = args.batch, args.grid, args.grid * backbone.patch_size
    torch.manual_seed(0)
    head = SegmentationHead(backbone.dim, args.code_dim).to(device)
    cluster = ClusterProbe(args.code_dim, 27).to(device)
    linear = LinearProbe(args.code_dim, 27).to(device)
    opts = [torch.optim.Adam(head.parameters(), lr=5e-4),
            torch.optim.Adam(cluster.parameters(), lr=5e-3),
            torch.optim.Adam(linear.parameters(), lr=5e-3)]
    images = torch.rand(b, 3, size, size, device=device)
    images_pos = torch.rand(b, 3, size, size, device=device)
    labels = torch.randint(0, 27, (b, size, size), device=device)
    depth = random_depth(b, g * p, device, seed=1)
    depth_pos = random_depth(b, g * p, device, seed=2)

    def step():
        feats, feats_pos = backbone(images), backbone(images_pos)
        code, code_pos = head(torch.cat([feats, feats_pos])).chunk(2)
        total = objective(feats, feats_pos, code, code_pos, depth, depth_pos, args.samples,
                          args.sampling, args.neg_samples)
        total = total + linear.loss(code, labels) + cluster(code.detach(), None)[0]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in opts:
            opt.step()
    return step, backbone


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--feat-dim", type=int, default=384, help="D (ignored with --backbone)")
    ap.add_argument("--grid", type=int, default=28, help="feature grid side G")
    ap.add_argument("--code-dim", type=int, default=70)
    ap.add_argument("--samples", type=int, default=11, help="S: S×S points per image")
    ap.add_argument("--sampling", choices=["fps", "random"], default="fps")
    ap.add_argument("--neg-samples", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--backbone", default=None, help="time a full training step with it")
    ap.add_argument("--patch", type=int, default=8, help="depth side = grid·patch (no backbone)")
    add_versus_args(ap)
    args, device = parse_versus_args(ap, argv)

    def ours_objective(*a):
        return library_objective(*a, fidelity=args.fidelity)

    name = "train_step" if args.backbone else "depthg_loss_fwd_bwd"
    if args.backbone:
        step, backbone = full_step_fn(ours_objective, args, device)
        args.feat_dim = backbone.dim
    else:
        step = loss_step_fn(ours_objective, args, device)
    base_step = None
    if not args.no_baseline:  # built up front: both are then timed alternately
        base_step = (full_step_fn(released_objective, args, device)[0] if args.backbone
                     else loss_step_fn(released_objective, args, device))
    return run_versus(args, device, step, base_step,
                      names=(name, f"{name}_released_structure"),
                      backbone=args.backbone or "-", sampling=args.sampling,
                      extra={"grid": args.grid, "feat_dim": args.feat_dim,
                             "code_dim": args.code_dim, "neg_samples": args.neg_samples},
                      columns=["name", "device", "backbone", "batch", "S", "sampling",
                               "fidelity", "ms_per_step", "median_ms", "peak_mem_mb"],
                      versus="the released structure")


if __name__ == "__main__":
    sys.exit(main())
