"""The SynthScenes class table (ids = position; stuff first, then things)."""

from __future__ import annotations

from typing import NamedTuple


class SynthClass(NamedTuple):
    """One SynthScenes class: its name, the colour figures draw it with, thing or stuff."""

    name: str
    color: tuple[int, int, int]
    is_thing: bool


CLASSES: tuple[SynthClass, ...] = (
    SynthClass("sky", (110, 170, 235), False),
    SynthClass("grass", (80, 160, 40), False),
    SynthClass("road", (128, 64, 128), False),
    SynthClass("sand", (235, 205, 130), False),
    SynthClass("water", (20, 60, 170), False),
    SynthClass("building", (105, 105, 105), False),
    SynthClass("box", (230, 40, 50), True),
    SynthClass("sphere", (255, 150, 0), True),
    SynthClass("cylinder", (0, 205, 215), True),
    SynthClass("cone", (245, 235, 30), True),
    SynthClass("tree", (15, 95, 35), True),
    SynthClass("person", (235, 60, 235), True),
)
N_CLASSES = len(CLASSES)
CLASS_NAMES = tuple(c.name for c in CLASSES)
FAR_DEPTH = 100.0  # metres: the far plane, the depth of sky pixels; farther hits become sky

SKY, GRASS, ROAD, SAND, WATER, BUILDING, BOX, SPHERE, CYLINDER, CONE, TREE, PERSON = range(12)
THING_IDS = tuple(i for i, c in enumerate(CLASSES) if c.is_thing)
