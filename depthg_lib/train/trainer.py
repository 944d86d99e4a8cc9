"""One training step: head and probes forward, the DepthG loss, three Adam steps
(docs/method.md §8)."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import Profile
from ..errors import DepthGError
from ..losses import LossSettings, depthg_loss
from ..models import DepthGModel
from .runlog import LOSS_TERMS
from .seeds import DROPOUT, INIT, LOSS, step_seed


@dataclass
class Schedule:
    """Values that change during training (docs/method.md §8; golden README note 4)."""

    samples: int
    weight_depth: float
    shift_depth: float

    @classmethod
    def start(cls, profile: Profile) -> Schedule:
        return cls(profile.samples, profile.weight_depth, profile.shift_depth)

    def advance(self, step: int, profile: Profile) -> None:
        """Apply the decays due after `step`: depth weight and shift × factor every
        `depth_decay_every` steps, never at step 0; S ← max(int(S·factor), fps_min_samples)
        every `fps_sample_decay_every` steps, at step 0 only in `released` (its quirk: 11×11
        at step 0 alone, 9×9 from step 1)."""
        if step > 0 and step % profile.depth_decay_every == 0:
            self.weight_depth *= profile.depth_decay_factor
            self.shift_depth *= profile.depth_decay_factor
        if (profile.fps_sample_decay and step % profile.fps_sample_decay_every == 0
                and (step > 0 or profile.fidelity == "released")):
            self.samples = max(int(self.samples * profile.fps_sample_decay_factor),
                               profile.fps_min_samples)


def loss_settings(p: Profile, sch: Schedule) -> LossSettings:
    """The objective's settings at this step: the profile's, with the scheduled S, w_depth,
    s_depth (docs/method.md §8 step 6)."""
    return LossSettings(
        shifts={**p.shifts, "depth": sch.shift_depth},
        weights={**p.weights, "depth": sch.weight_depth}, n_samples=sch.samples,
        sampling=p.sampling, fidelity=p.fidelity, neg_samples=p.neg_samples,
        pointwise=p.pointwise, zero_clamp=p.zero_clamp, stabilize=p.stabilize,
        use_depth=p.use_depth, feature_dropout=p.feature_dropout)


def check_shapes(feats, feats_pos, label, depth, depth_pos, samples: int) -> None:
    """One clear error for a batch whose parts do not fit together."""
    b, _, h, w = feats.shape
    if feats_pos.shape != feats.shape:
        raise DepthGError(f"features of the images {tuple(feats.shape)} and of their positives "
                          f"{tuple(feats_pos.shape)} differ in shape")
    for name, t in (("depth", depth), ("depth_pos", depth_pos)):
        if t.dim() != 4 or t.shape[0] != b or t.shape[1] != 1:
            raise DepthGError(f"{name} must be (B,1,H,W) with B = {b}, got {tuple(t.shape)}")
    if label.dim() != 3 or label.shape[0] != b:
        raise DepthGError(f"labels must be (B,H,W) with B = {b}, got {tuple(label.shape)}")
    if samples > min(h, w):
        raise DepthGError(f"the sample grid S = {samples} is larger than the {h}×{w} feature "
                          "grid; lower `samples` (and `fps_min_samples`) or raise `res`")


class Trainer:
    """Head, probes, their three Adam optimisers and the schedules; `step` trains one step.

    With W > 1 processes the model is wrapped in DistributedDataParallel: rank r computes the
    loss on its B/W crops of the step and DDP averages the gradients, so all ranks take the
    same step. That equals one process's step only for the per-image terms: negatives are
    drawn within the rank's shard, dropout masks seeded by (seed, step, rank), and `pointwise`
    centring uses the shard's mean of F (tests/test_ddp.py switches those three off)."""

    def __init__(self, profile: Profile, backbone_dim: int, device: torch.device,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.profile, self.device, self.seed = profile, device, seed
        self.rank, self.world = rank, world
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(seed, 0, 0, INIT))
            model = DepthGModel(backbone_dim, profile.dim, profile.n_classes,
                                profile.extra_clusters, profile.dropout, profile.nonlinear)
        self.model = model.to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizers = {  # one per part, named as the part (and its checkpoint entry)
            k: torch.optim.Adam(getattr(self.model, k).parameters(), lr=lr) for k, lr in
            (("head", profile.lr), ("cluster_probe", profile.probe_lr),
             ("linear_probe", profile.probe_lr))}
        self.schedule = Schedule.start(profile)

    def step(self, step: int, feats: torch.Tensor, feats_pos: torch.Tensor, label: torch.Tensor,
             depth: torch.Tensor, depth_pos: torch.Tensor) -> dict:
        """One optimiser step; returns the step's numbers (0-d tensors, not yet synchronised)."""
        p, sch = self.profile, self.schedule
        check_shapes(feats, feats_pos, label, depth, depth_pos, sch.samples)
        torch.manual_seed(step_seed(self.seed, step, self.rank, DROPOUT))  # head + loss dropout
        gen = torch.Generator(device=feats.device)
        gen.manual_seed(step_seed(self.seed, step, self.rank, LOSS))  # sample points, negatives
        self.net.train()
        cuda = feats.is_cuda
        if cuda:
            feats = feats.contiguous(memory_format=torch.channels_last)
            feats_pos = feats_pos.contiguous(memory_format=torch.channels_last)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
        with amp:
            code, code_pos, linear_loss, cluster_loss = self.net(feats, feats_pos, label)
        terms = depthg_loss(feats.float(), feats_pos.float(), code.float(), code_pos.float(),
                            depth, depth_pos, loss_settings(p, sch), generator=gen)
        total = terms["total"] + linear_loss.float() + cluster_loss.float()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self.optimizers.values():
            opt.step()
        record = {"step": step, "samples": sch.samples, "weight_depth": sch.weight_depth,
                  "shift_depth": sch.shift_depth}
        values = [terms[k].detach().float() for k in LOSS_TERMS]
        values += [terms["total"].detach().float(), linear_loss.detach().float(),
                   cluster_loss.detach().float(), total.detach()]
        record["values"] = torch.stack([v.reshape(()) for v in values])
        sch.advance(step, p)
        return record

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {**{k: getattr(self.model, k).state_dict() for k in self.optimizers},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedule": dataclasses.asdict(self.schedule)}

    def load_state_dict(self, state: dict) -> None:
        for k, opt in self.optimizers.items():
            getattr(self.model, k).load_state_dict(state[k])
            opt.load_state_dict(state["optimizers"][k])
        self.schedule = Schedule(**state["schedule"])
