"""Chapter 04: train the DepthG segmentation head on frozen backbone features (docs/method.md §8).

    python -m depthg_lib.train --profile demo [--resume] [--force] [--device cpu|cuda]
                               [--steps N] [--out DIR] [--seed K]
    torchrun --nproc-per-node 2 -m depthg_lib.train --profile demo     # DDP

Per step: features of a batch of crops and of their kNN positives (frozen backbone or feature
cache), head → codes, the DepthG loss (docs/method.md §6), the linear and cluster probes on the
detached code; one backward, three Adam steps, then the schedules. Writes `<out>/log.csv`,
TensorBoard events in `<out>/tb/` and `<out>/checkpoints/{last,previous,final}.pt`.

The parts, in reading order: `data` (crops, kNN table, batches per step, feature cache),
`trainer` (schedules, one optimiser step), `validation` (probe scores), `runlog` (log.csv,
TensorBoard), `seeds` (exact resume), `distributed` (several processes), `loop` (the run:
resume, checkpoints, divergence). Checkpoint files are `depthg_lib.checkpoint`'s.
"""

from .data import ArrayCrops, StepSampler, TrainData, open_train_data
from .loop import stage_settings, train
from .runlog import BEFORE_TRAINING, LOG_COLUMNS
from .trainer import Schedule, Trainer

__all__ = ["BEFORE_TRAINING", "LOG_COLUMNS", "ArrayCrops", "Schedule", "StepSampler",
           "TrainData", "Trainer", "open_train_data", "stage_settings", "train"]
