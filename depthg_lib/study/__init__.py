"""Chapter 06's study (`python -m depthg_lib.study`, docs/method.md §10): does the head beat its
input, and when does depth help? Splits by SynthScenes seed, paired bootstrap intervals, every
result stored at once (`--resume`), stored heads re-scored elsewhere (`--report-seed`)."""

from .claims import claims, prediction_checks
from .readme import head_margin, results_table
from .report import RESULT_KEYS
from .runner import Study, rescore_published, run_study
from .scoring import linear_miou, paired_bootstrap, unsup_miou, verdict
from .splits import split_dir

__all__ = ["RESULT_KEYS", "Study", "claims", "head_margin", "linear_miou", "paired_bootstrap",
           "prediction_checks", "rescore_published", "results_table", "run_study", "split_dir",
           "unsup_miou", "verdict"]
