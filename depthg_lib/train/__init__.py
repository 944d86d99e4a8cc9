"""Chapter 04: train the DepthG head on frozen backbone features (docs/method.md §8).

    python -m depthg_lib.train --profile demo [--resume] [--force] [--device cpu|cuda]
    torchrun --nproc-per-node 2 -m depthg_lib.train --profile demo     # DDP

Reading order: `data` (crops, kNN table, each step's batch, feature cache, seeds), `trainer`
(one step, schedules, several processes), `validation`, `runlog` (log.csv, TensorBoard),
`loop` (the run: resume, checkpoints, divergence).
"""

from .data import ArrayCrops, StepSampler, TrainData, open_train_data
from .loop import stage_settings, train
from .runlog import BEFORE_TRAINING, LOG_COLUMNS
from .trainer import Schedule, Trainer

__all__ = ["BEFORE_TRAINING", "LOG_COLUMNS", "ArrayCrops", "Schedule", "StepSampler",
           "TrainData", "Trainer", "open_train_data", "stage_settings", "train"]
