"""Several processes (torchrun): rank and world size, barriers, numbers averaged over ranks.
With one process (W = 1) each helper does nothing; `trainer.Trainer` says what W > 1 does."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def start(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group) — torchrun sets WORLD_SIZE."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def mean_over_ranks(values: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of `values` over all ranks (a collective: every rank must call it)."""
    if world > 1:
        dist.all_reduce(values)
        values = values / world
    return values
