"""Chapter 06's study: does the head beat its input, and when does depth help?

    python -m depthg_lib.study --profile study [--report-seed S] [--seeds N] [--resume]
                               [--out DIR] [--publish] [--device cpu|cuda]

A fair, resumable experiment on SynthScenes (docs/method.md §10): three disjoint SynthScenes
seeds split the data into *train*, *tune* (every choice) and *report* (only the final tables);
the knob (`study_knob`, SynthScenes' `camouflage`) and the nuisance strengths set how much
appearance alone can tell; the factorial (`depthg_lib.ablation`) and the raw-feature baselines
run on the same images, seeds and steps; paired differences get 95 % bootstrap intervals over
seeds and images (`paired_bootstrap`). Every result goes to `<out>/store.json` as soon as it
exists, so `--resume` continues an interrupted study; `--report-seed S` re-scores the stored
heads on another report split without training.
"""

from .claims import claims, prediction_checks
from .launch import rescore_published, run_study
from .readme import head_margin, results_table
from .report import RESULT_KEYS
from .runner import Study
from .splits import split_dir
from .stats import linear_miou, paired_bootstrap, unsup_miou, verdict

__all__ = ["RESULT_KEYS", "Study", "claims", "head_margin", "linear_miou", "paired_bootstrap",
           "prediction_checks", "rescore_published", "results_table", "run_study", "split_dir",
           "unsup_miou", "verdict"]
