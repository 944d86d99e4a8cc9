"""One rank of the torchrun test in tests/test_ddp.py (launched as a script, not collected).

    torchrun --standalone --nproc-per-node 2 tests/ddp_rank.py OUT

A real `train()` run of two steps on tiny in-memory crops with everything random switched on
(head dropout, the loss's feature dropout, negatives). Each rank saves its parameters after
every step (`OUT/rank<r>_step<k>.pt`) and the size of the batch each negative draw saw
(`OUT/rank<r>.json`), so the test can check what the docstrings claim.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from depthg_lib import losses
from depthg_lib import train as T
from depthg_lib.config import load_profile
from depthg_lib.train import loop

N_CROPS, SIZE = 8, 32


def profile():
    return load_profile("test").replace(
        res=32, samples=3, fps_min_samples=2, batch_size=4, steps=2, dim=8, n_classes=4,
        knn_k=2, knn_store=4, num_workers=0, precompute_features=False, val_every=2,
        checkpoint_every=2, val_images=0, neg_samples=1, feature_dropout=0.1, dropout=True)


def data() -> T.TrainData:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_CROPS, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (N_CROPS, SIZE, SIZE), dtype=np.uint8)
    depth = rng.integers(0, 65536, (N_CROPS, SIZE, SIZE), dtype=np.uint16)
    knn = np.stack([np.r_[i, (i + 1) % N_CROPS, (i + 3) % N_CROPS, (i + 5) % N_CROPS]
                    for i in range(N_CROPS)]).astype(np.int64)
    return T.TrainData(train=T.ArrayCrops(images, labels, depth), knn=knn,
                       val=T.ArrayCrops(images[:2], labels[:2], depth[:2]))


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    seen, local = [], []
    draw = losses.negative_permutations

    def recording(batch, k, *args, **kwargs):
        seen.append(int(batch))
        return draw(batch, k, *args, **kwargs)

    class Recording(T.Trainer):
        def step(self, step, *args):
            record = super().step(step, *args)
            local.append(float(record["values"][-1]))  # this rank's total, before averaging
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            torch.save(state, out / f"rank{self.rank}_step{step}.pt")
            return record

    losses.negative_permutations = recording
    loop.Trainer = Recording
    T.train(profile(), out / "run", device="cpu", data=data(), progress=False)
    (out / f"rank{rank}.json").write_text(json.dumps({"negative_batches": seen,
                                                          "losses": local}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
