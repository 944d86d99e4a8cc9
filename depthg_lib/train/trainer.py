"""One training step (docs/method.md §8 steps 3–6): head and probes forward, the DepthG loss,
one backward, three Adam steps, the schedules."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from ..config import Profile
from ..losses import LossSettings, depthg_loss
from ..models import DepthGModel
from .data import DROPOUT, INIT, LOSS, step_seed
from .runlog import LOSS_TERMS


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
        """The decays due after `step` (§8 step 6): w_depth and s_depth every
        `depth_decay_every` steps, never at step 0; S every `fps_sample_decay_every` steps,
        at step 0 only in `released` (its quirk: 11×11 at step 0 alone, 9×9 from step 1)."""
        if step > 0 and step % profile.depth_decay_every == 0:
            self.weight_depth *= profile.depth_decay_factor
            self.shift_depth *= profile.depth_decay_factor
        if (profile.fps_sample_decay and step % profile.fps_sample_decay_every == 0
                and (step > 0 or profile.fidelity == "released")):
            self.samples = max(int(self.samples * profile.fps_sample_decay_factor),
                               profile.fps_min_samples)


def loss_settings(p: Profile, sch: Schedule) -> LossSettings:
    """The objective's settings: the profile's, with this step's scheduled S, w_depth, s_depth."""
    return LossSettings(
        shifts={**p.shifts, "depth": sch.shift_depth},
        weights={**p.weights, "depth": sch.weight_depth}, n_samples=sch.samples,
        sampling=p.sampling, fidelity=p.fidelity, neg_samples=p.neg_samples,
        pointwise=p.pointwise, zero_clamp=p.zero_clamp, stabilize=p.stabilize,
        use_depth=p.use_depth, feature_dropout=p.feature_dropout)


class Trainer:
    """Head, probes, their three Adam optimisers and the schedules; `step` trains one step.

    With W > 1 processes DDP wraps the model: rank r computes the loss on its B/W crops and
    DDP averages the gradients, so all ranks take the same step. That equals one process's
    step only for per-image terms: negatives are drawn within the rank's shard, dropout masks
    seeded by rank, `pointwise` centres on the shard's mean (tests/test_ddp.py)."""

    def __init__(self, profile: Profile, backbone_dim: int, device: torch.device,
                 seed: int = 0, rank: int = 0, world: int = 1):
        self.profile, self.seed, self.rank = profile, seed, rank
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed(seed, 0, 0, INIT))
            model = DepthGModel(backbone_dim, profile.dim, profile.n_classes,
                                profile.extra_clusters, profile.dropout, profile.nonlinear)
        self.model = model.to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        ids = [device.index] if device.type == "cuda" else None
        self.net = DistributedDataParallel(self.model, device_ids=ids) if world > 1 else self.model
        self.optimizers = {  # one per part, named as the part (and its checkpoint entry)
            k: torch.optim.Adam(getattr(self.model, k).parameters(), lr=lr) for k, lr in
            (("head", profile.lr), ("cluster_probe", profile.probe_lr),
             ("linear_probe", profile.probe_lr))}
        self.schedule = Schedule.start(profile)

    def step(self, step: int, feats: torch.Tensor, feats_pos: torch.Tensor, label: torch.Tensor,
             depth: torch.Tensor, depth_pos: torch.Tensor) -> dict:
        """One optimiser step; returns the step's numbers (0-d tensors, not yet synchronised)."""
        p, sch = self.profile, self.schedule
        torch.manual_seed(step_seed(self.seed, step, self.rank, DROPOUT))  # head + loss dropout
        gen = torch.Generator(device=feats.device)
        gen.manual_seed(step_seed(self.seed, step, self.rank, LOSS))  # sample points, negatives
        self.net.train()
        cuda = feats.is_cuda
        if cuda:
            feats = feats.contiguous(memory_format=torch.channels_last)
            feats_pos = feats_pos.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext():
            code, code_pos, linear_loss, cluster_loss = self.net(feats, feats_pos, label)
        terms = depthg_loss(feats.float(), feats_pos.float(), code.float(), code_pos.float(),
                            depth, depth_pos, loss_settings(p, sch), generator=gen)
        total = terms["total"] + linear_loss.float() + cluster_loss.float()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in self.optimizers.values():
            opt.step()
        values = [terms[k] for k in (*LOSS_TERMS, "total")] + [linear_loss, cluster_loss, total]
        record = {"step": step, **dataclasses.asdict(sch),
                  "values": torch.stack([v.detach().float().reshape(()) for v in values])}
        sch.advance(step, p)
        return record

    def state_dict(self) -> dict:
        return {**{k: getattr(self.model, k).state_dict() for k in self.optimizers},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedule": dataclasses.asdict(self.schedule)}

    def load_state_dict(self, state: dict) -> None:
        for k, opt in self.optimizers.items():
            getattr(self.model, k).load_state_dict(state[k])
            opt.load_state_dict(state["optimizers"][k])
        self.schedule = Schedule(**state["schedule"])
