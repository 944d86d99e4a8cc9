"""SynthScenes: procedurally ray-cast outdoor scenes with exact labels and depth
(docs/method.md §1).

The course's default dataset: it needs no download and runs on a fresh CPU machine. Every
image is ray-cast in numpy, vectorised over pixels: a pinhole camera looks at a ground plane
whose material regions (grass, road, sand, water) are procedural, buildings stand in the
background, and things (box, sphere, cylinder, cone, tree, person) stand on the ground. Label,
depth and instance of a pixel all come from the same first hit, so they agree exactly.

Appearance is drawn so that colour alone does not give the class away: per-instance colours
from overlapping hue ranges, the same texture families for every thing class, Lambertian
shading with cast shadows, fog and sensor noise.

World frame: x right, y forward, z up, ground at z = 0, camera at (0, 0, height). Depth is the
distance along the optical axis (not along the ray); rays are scaled so that their forward
component is 1, which makes the ray parameter `t` equal to that depth.

    scene = render_scene(seed=0, size=128)      # one image, in memory
    generate("data/synthscenes", n_train=500, n_val=100, size=128, seed=0)   # STEGO layout
    python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S --seed K

The parts, in reading order: `classes` (the class table), `shapes` (ray intersections),
`scene` (what a scene is made of), `noise` and `materials` (appearance), `render`
(`render_layout`: ray casting), `layout` (`sample_layout`: a random scene from a seed),
`generate` (the dataset on disk and the command line).
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
