"""SynthScenes (docs/method.md §1), the course's default dataset: ray-cast outdoor scenes with
exact labels and depth. `render_scene(seed=0, size=128)` makes one in memory;
`generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)` a folder (STEGO layout).
"""

from .classes import CLASS_NAMES, CLASSES, FAR_DEPTH, N_CLASSES, SKY, THING_IDS
from .generate import generate
from .layout import render_scene
from .scene import Scene

__all__ = ["CLASSES", "CLASS_NAMES", "FAR_DEPTH", "N_CLASSES", "SKY", "THING_IDS", "Scene",
           "generate", "render_scene"]
