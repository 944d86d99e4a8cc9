"""DistributedDataParallel: two CPU ranks with B/2 crops each take one process's step.

Two processes (torch.multiprocessing, forked; gloo, rendezvous through a file) run `train()` for
two steps on the same tiny crops as one process with the full batch; head parameters, the
Adam moments (the gradients) and the logged losses and validation scores must agree to float
tolerance. Rank 0 builds the frozen-feature cache while rank 1 waits; the one-process run
reuses it.

The comparison switches off what legitimately couples the images of a batch or draws
per-rank random numbers: dropout (masks differ per rank), the negative term (negatives are
other images of the *local* batch) and `pointwise` (the released centring adds back the
batch-global mean of F, docs/method.md §6, so F depends on which images share a batch).
"""

from __future__ import annotations

import csv
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from depthg_lib import train as T
from depthg_lib.config import load_profile
from depthg_lib.models import load_backbone

N_CROPS, SIZE = 8, 32


def _profile():
    return load_profile("test").replace(
        res=32, samples=3, fps_min_samples=2, batch_size=4, steps=2, dim=8, n_classes=4,
        knn_k=2, knn_store=4, num_workers=0, precompute_features=True, val_every=1,
        checkpoint_every=100, dropout=False, feature_dropout=0.0, weight_neg=0.0,
        pointwise=False, sampling="fps")


def _data(cache_dir) -> T.TrainData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_CROPS, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (N_CROPS, SIZE, SIZE), dtype=np.uint8)
    depth = rng.integers(0, 65536, (N_CROPS, SIZE, SIZE), dtype=np.uint16)
    knn = np.stack([np.r_[i, (i + 1) % N_CROPS, (i + 3) % N_CROPS, (i + 5) % N_CROPS]
                    for i in range(N_CROPS)]).astype(np.int64)
    val = T.ArrayCrops(images[:3], labels[:3], depth[:3])  # rank 0 validates after each step
    return T.TrainData(train=T.ArrayCrops(images, labels, depth), knn=knn, val=val,
                       cache_dir=cache_dir, key="ddp-test")


def _rank(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))  # no endless hang
    try:
        T.train(_profile(), f"{out_dir}/ddp", device="cpu", data=_data(f"{out_dir}/features"),
                progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_half_batches_take_the_one_process_step(tmp_path):
    torch.set_num_threads(1)
    load_backbone(_profile().backbone)  # import timm & co. here: forked ranks inherit them
    # (spawn would re-import torch and timm, 10+ s per rank on a busy 2-core machine)
    mp.start_processes(_rank, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)),
                       nprocs=2, join=True, start_method="fork")
    # rank 0 built the frozen-feature cache; the one-process run reads the same one
    single = T.train(_profile(), tmp_path / "single", device="cpu",
                     data=_data(tmp_path / "features"), progress=False)
    a = torch.load(single, weights_only=True)
    b = torch.load(tmp_path / "ddp/checkpoints/final.pt", weights_only=True)
    assert a["step"] == b["step"] == 2
    for key, value in a["head"].items():
        torch.testing.assert_close(b["head"][key], value, rtol=1e-5, atol=1e-6)
    # the gradients themselves: Adam's first moment holds (1−β1)·Σ β1^k g
    for (sa, sb) in zip(a["optimizers"]["head"]["state"].values(),
                        b["optimizers"]["head"]["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=1e-4, atol=1e-7)
    # the log holds the mean over ranks, i.e. the one-process numbers (negatives excepted)
    rows_a, rows_b = (list(csv.DictReader((d / "log.csv").read_text().splitlines()))
                      for d in (tmp_path / "single", tmp_path / "ddp"))
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for col in ("pos_intra", "pos_inter", "depth", "linear_loss", "cluster_loss",
                    "val_linear_acc", "val_cluster_acc"):
            if ra[col] == "":  # the untrained head's row has scores only
                assert rb[col] == "" and ra["step"] == "-1", col
                continue
            assert float(rb[col]) == pytest.approx(float(ra[col]), rel=1e-5, abs=1e-6), col
    # and the run did train: parameters moved away from their initial values
    init = T.Trainer(_profile(), a["backbone_dim"], torch.device("cpu")).model.head.state_dict()
    assert any(not torch.allclose(init[k], a["head"][k]) for k in init)


@pytest.mark.slow
def test_torchrun_two_ranks_train_and_agree_on_the_parameters(tmp_path):
    """`torchrun --nproc-per-node 2` (gloo, CPU) runs a real training with everything random
    on. Each rank draws its negatives among its own B/W crops and its own dropout masks, so
    the ranks' losses differ; DDP averages the gradients, so after every step both hold the
    same parameters — and they did move."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("ddp_rank.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(worker.parent.parent)}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(worker), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    for step in (0, 1):
        a, b = (torch.load(tmp_path / f"rank{r}_step{step}.pt", weights_only=True)
                for r in (0, 1))
        for key in a:
            assert torch.equal(a[key], b[key]), (step, key)
    first = torch.load(tmp_path / "rank0_step0.pt", weights_only=True)
    last = torch.load(tmp_path / "rank0_step1.pt", weights_only=True)
    assert any(not torch.equal(first[k], last[k]) for k in first)  # the second step trained
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:  # negatives drawn per shard: among the rank's 2 of the batch's 4 crops
        assert seen["negative_batches"] == [2, 2]
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank's own crops, masks, negatives
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").read_text().splitlines()))
    assert [r["step"] for r in rows] == ["-1", "0", "1"]  # the untrained head, then 2 steps
    assert all(np.isfinite(float(r["total"])) for r in rows[1:])
    assert rows[-1]["val_linear_acc"] != ""  # rank 0 validated
