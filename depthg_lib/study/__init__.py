"""Chapter 06's study: does the head beat its input, and when does depth help?

    python -m depthg_lib.study --profile study [--report-seed S] [--seeds N] [--resume]
                               [--out DIR] [--publish] [--device cpu|cuda]

A fair, resumable experiment on SynthScenes (docs/method.md §10):

- **Splits by seed.** Three disjoint SynthScenes seeds: *train* (`synth_seed`: crops, kNN,
  training), *tune* (`tune_seed`: validation curves and every choice — the loss shifts, the
  steps) and *report* (`report_seed`, `study_n_report` images: only the final tables).
- **The knob** (`study_knob`): SynthScenes' `camouflage`, the share of things that wear the
  look of the ground they stand on, so that appearance alone cannot tell them apart and
  geometry becomes the cue. Each setting renders its own three splits; the premise (AUROC of
  feature vs depth similarity for "same class", `depthg_lib.premise`) is measured on tune.
- **The factorial** (`depthg_lib.ablation`): STEGO, + depth term, + FPS, + both, in
  `released` and `corrected` fidelity; the same steps, seeds and data for every arm.
- **Baselines on the same report images**: k-means on raw backbone features fitted on the
  training crops (`kmeans_raw_train_fit`) and fitted on the report images themselves
  (`kmeans_raw_transductive`), a linear probe on raw features (`linear_raw`), and for the
  reference arm the head's cluster probe, k-means on its codes and its linear probe.
- **Statistics**: paired differences (same seeds, same report images) with 95 % bootstrap
  intervals over seeds and images (`paired_bootstrap`).

Every (arm, knob, seed) and baseline result is stored in `<out>/store.json` as soon as it
exists (per-image confusion matrices beside it), so an interrupted study resumes with
`--resume`; `results.json` (schema in `RESULT_KEYS`) and the figures are rewritten after
every pass over the seeds. `--report-seed S` re-scores the stored heads on a report split of
your choosing without training anything again.
"""

from .launch import rescore_published, run_study
from .report import (
    BASELINES,
    RESULT_KEYS,
    ci_lines,
    claims,
    head_margin,
    prediction_checks,
    results_table,
    summarize,
)
from .runner import Study
from .splits import KNOB, knob_key, knob_profile, split_dir
from .stats import linear_miou, paired_bootstrap, unsup_miou, verdict

__all__ = ["BASELINES", "KNOB", "RESULT_KEYS", "Study", "ci_lines", "claims", "head_margin",
           "prediction_checks", "rescore_published",
           "knob_key", "knob_profile", "linear_miou", "paired_bootstrap", "results_table",
           "run_study", "split_dir", "summarize", "unsup_miou", "verdict"]
