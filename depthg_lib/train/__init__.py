"""Chapter 04: train the DepthG segmentation head on frozen backbone features (docs/method.md §8).

    python -m depthg_lib.train --profile demo [--resume] [--force] [--device cpu|cuda]
                               [--steps N] [--out DIR] [--seed K]
    torchrun --nproc-per-node 2 -m depthg_lib.train --profile demo     # DDP:
        # each rank its B/W crops, its own negatives and dropout masks; gradients averaged

Per step: features of a batch of crops and of their kNN positives (frozen backbone, or the
frozen-feature cache), head → codes, the DepthG loss (docs/method.md §6), the linear probe
(cross-entropy on the *detached* code upsampled to label size) and the cluster probe on the
detached code; one backward, three Adam steps; then the depth-weight and sample-count
schedules. Writes `<out>/log.csv`, TensorBoard events in `<out>/tb/`, and
`<out>/checkpoints/{last,previous,final}.pt` (`previous.pt`: the checkpoint before the
latest, which `--resume` falls back to if `last.pt` is unreadable).

Exact resume: everything random in step k (which crops, which positives, dropout masks,
sample points) is drawn from generators seeded by (seed, k) alone, so a run interrupted at
step k and resumed logs the same numbers as one that never stopped.

The parts, in reading order: `data` (crops, kNN table, batches per step, feature cache),
`trainer` (schedules and one optimiser step), `validation` (probe scores during training),
`runlog` (log.csv, TensorBoard), `distributed` (several processes), `loop` (the run:
resume, checkpoints, divergence), `cli`. Checkpoint files and the trained model that
evaluation and prediction load are in `depthg_lib.checkpoint`.
"""

from ..checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from ..models import DepthGModel
from .data import ArrayCrops, StepSampler, TrainData, open_train_data
from .loop import stage_settings, train
from .runlog import BEFORE_TRAINING, LOG_COLUMNS
from .trainer import Schedule, Trainer

__all__ = ["BEFORE_TRAINING", "CHECKPOINT_FORMAT", "LOG_COLUMNS", "ArrayCrops", "DepthGModel",
           "Schedule", "StepSampler", "TrainData", "Trainer", "load_checkpoint",
           "open_train_data", "stage_settings", "train"]
