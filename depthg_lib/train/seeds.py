"""Seeds of the training run's random streams: everything random in step k (crops, positives,
dropout masks, sample points) is drawn from a generator seeded by (seed, step, rank, stream)
alone, so a resumed run logs the same numbers as one that never stopped, with no saved state.
"""

from __future__ import annotations

import numpy as np

# The independent streams of one step (the last argument of `step_seed`).
ORDER, POSITIVE, DROPOUT, LOSS, INIT = range(5)


def step_seed(*key: int) -> int:
    """A 63-bit seed determined by the key (seed, step, rank, stream) alone."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])
