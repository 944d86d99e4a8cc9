"""SynthScenes: procedurally ray-cast outdoor scenes with exact labels and depth
(docs/method.md §1), the course's default dataset: no download, a CPU is enough.

A pinhole camera looks at a ground of procedural regions (grass, road, sand, water), buildings
behind and things (box, sphere, cylinder, cone, tree, person) on it; label, depth and instance
of a pixel come from the same first hit. Overlapping hue ranges, shared textures, shadows, fog
and sensor noise keep colour alone from giving the class away. World frame: x right,
y forward, z up, camera at (0, 0, height); rays have forward component 1, so a hit's ray
parameter is its depth along the optical axis.

    scene = render_scene(seed=0, size=128)      # one image, in memory
    generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)   # STEGO layout
    python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S --seed K

Reading order: `classes`, `shapes` (ray intersections), `scene`, `noise` and `materials`
(appearance), `render` (ray casting), `layout` (a random scene from a seed), `generate`.
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
    class_shares,
)
from .generate import SPLIT_IDS, generate
from .layout import render_scene, sample_layout
from .render import render_layout
from .scene import Camera, Layout, Look, Scene, SceneObject
from .shapes import Box, Sphere

__all__ = [
    "BUILDING", "CLASSES", "CLASS_NAMES", "FAR_DEPTH", "GRASS", "N_CLASSES", "ROAD", "SAND",
    "SKY", "SPHERE", "SPLIT_IDS", "THING_IDS", "WATER", "Box", "Camera", "Layout", "Look",
    "Scene", "SceneObject", "Sphere", "class_shares", "generate", "render_layout",
    "render_scene", "sample_layout",
]
