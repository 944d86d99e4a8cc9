"""SynthScenes (docs/method.md §1): procedurally ray-cast outdoor scenes with exact labels and
depth, the course's default dataset. Frame: x right, y forward, z up, camera at (0, 0, height).

    scene = render_scene(seed=0, size=128)      # one image, in memory
    generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)   # STEGO layout
    python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S --seed K
"""

from .classes import (
    BUILDING,
    CLASS_NAMES,
    CLASSES,
    FAR_DEPTH,
    GRASS,
    N_CLASSES,
    ROAD,
    SAND,
    SKY,
    SPHERE,
    THING_IDS,
    WATER,
)
from .generate import SPLIT_IDS, generate
from .layout import render_scene, sample_layout
from .render import render_layout
from .scene import Camera, Layout, Look, Scene, SceneObject
from .shapes import Box, Sphere

__all__ = [
    "BUILDING", "CLASSES", "CLASS_NAMES", "FAR_DEPTH", "GRASS", "N_CLASSES", "ROAD", "SAND",
    "SKY", "SPHERE", "SPLIT_IDS", "THING_IDS", "WATER", "Box", "Camera", "Layout", "Look",
    "Scene", "SceneObject", "Sphere", "generate", "render_layout",
    "render_scene", "sample_layout",
]
