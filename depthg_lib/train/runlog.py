"""What training writes while it runs: `log.csv` (every step) and TensorBoard events."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

from ..io import atomic_path

LOSS_TERMS = ("pos_intra", "pos_inter", "neg_inter", "depth")
# Per-step numbers, in log.csv column order. `loss` = weighted DepthG loss, `total` adds the
# two probe losses (what backward sees).
STEP_VALUES = (*LOSS_TERMS, "loss", "linear_loss", "cluster_loss", "total")
SCHEDULE = ("samples", "weight_depth", "shift_depth")
VAL_COLUMNS = ("val_linear_miou", "val_linear_acc", "val_cluster_miou", "val_cluster_acc")
LOG_COLUMNS = ("step", *SCHEDULE, *STEP_VALUES, *VAL_COLUMNS)
# Row `step` s holds the losses of update s+1 and, at validation steps, the probe scores after
# it; the row of step BEFORE_TRAINING holds only the untrained head's scores, where every
# curve starts.
BEFORE_TRAINING = -1


class RunLog:
    """`log.csv` (validation columns filled at validation steps) and TensorBoard, on rank 0;
    a resumed run drops the rows logged after its checkpoint."""

    def __init__(self, out: Path, start: int, enabled: bool = True):
        self.enabled, self.path, self.writer = enabled, out / "log.csv", None
        if not enabled:
            return
        kept = []
        if start > 0 and self.path.exists():
            with open(self.path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) < start]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, LOG_COLUMNS)
            w.writeheader()
            w.writerows(kept)
        self._fh = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._fh, LOG_COLUMNS)
        with contextlib.suppress(ImportError):  # optional and slow to import: CSV suffices
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"), purge_step=start)

    def write(self, rows: list[dict]) -> None:
        if not self.enabled:
            return
        for row in rows:
            self._csv.writerow({k: _cell(row.get(k)) for k in LOG_COLUMNS})
            for k in (*STEP_VALUES, *SCHEDULE, *VAL_COLUMNS):
                if self.writer is not None and row.get(k) is not None:
                    if k in VAL_COLUMNS:  # against updates done: 0 = the untrained head
                        self.writer.add_scalar(f"val/{k[4:]}", row[k], row["step"] + 1)
                    else:
                        group = "loss" if k in STEP_VALUES else "schedule"
                        self.writer.add_scalar(f"{group}/{k}", row[k], row["step"])
        self._fh.flush()

    def close(self) -> None:
        if self.enabled:
            self._fh.close()
            if self.writer is not None:
                self.writer.close()


def _cell(v):
    """A log.csv cell: empty for None, a float's shortest exact form (repr)."""
    return "" if v is None else repr(v) if isinstance(v, float) else v
