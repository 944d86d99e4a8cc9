"""SynthScenes (docs/method.md §1): procedurally ray-cast outdoor scenes with exact labels and
depth, the course's default dataset. Frame: x right, y forward, z up, camera at (0, 0, height).

    scene = render_scene(seed=0, size=128)      # one image, in memory
    generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)   # STEGO layout
    python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S --seed K
"""

from .classes import CLASS_NAMES, CLASSES, FAR_DEPTH, N_CLASSES, SKY, THING_IDS
from .generate import generate
from .layout import render_scene
from .scene import Scene

__all__ = ["CLASSES", "CLASS_NAMES", "FAR_DEPTH", "N_CLASSES", "SKY", "THING_IDS", "Scene",
           "generate", "render_scene"]
