"""SynthScenes (docs/method.md §1): exact ground truth, determinism, class coverage, CLI and
re-runs."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthg_lib.data import synthscenes as ss
from depthg_lib.data.synthscenes.classes import BUILDING, GRASS, ROAD, SAND, SPHERE, WATER
from depthg_lib.data.synthscenes.generate import SPLIT_IDS
from depthg_lib.data.synthscenes.layout import _THING_HUES, sample_layout
from depthg_lib.data.synthscenes.render import render_layout
from depthg_lib.data.synthscenes.scene import Camera, Layout, Look, SceneObject
from depthg_lib.data.synthscenes.shapes import Box, Sphere
from depthg_lib.errors import DepthGError

SEED = 20240611  # used only in these tests
GROUND = (GRASS, ROAD, SAND, WATER)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _analytic_ground_depth(camera: dict, shape: tuple[int, int]) -> np.ndarray:
    """Depth along the optical axis where each pixel's ray meets the plane z = 0 (inf: never)."""
    H, W = shape
    f, h, p = camera["focal_px"], camera["height"], math.radians(camera["pitch"])
    ys = (np.arange(H, dtype=np.float64) + 0.5 - H / 2) / f
    dz = math.sin(p) - ys * math.cos(p)  # z component of a ray whose forward component is 1
    with np.errstate(divide="ignore"):
        t = np.where(dz < 0, -h / dz, np.inf)
    return np.broadcast_to(t[:, None], (H, W))


def _wall_and_sphere_layout(with_sphere: bool = True) -> Layout:
    """Level camera 1.5 m high; a wall whose front face is 19.5 m ahead; a sphere at 8 m."""
    base = sample_layout(np.random.default_rng([SEED, 5]), n_things=0, n_buildings=0)
    plain = Look((0.6, 0.6, 0.6), (0.5, 0.5, 0.5), "noise", 1.0)
    wall = SceneObject(BUILDING, 0, ((Box((0.0, 20.0), (30.0, 0.5), 0.0, 10.0), plain),))
    ball = SceneObject(SPHERE, 1, ((Sphere((0.0, 8.0, 1.5), 1.0), plain),))
    ground = replace(base.ground, lake=None, sand=None, roads=())
    return replace(base, camera=Camera(height=1.5, pitch=0.0, fov=60.0), ground=ground,
                   objects=(wall, ball) if with_sphere else (wall,))


def test_class_table():
    assert len(ss.CLASSES) == ss.N_CLASSES == len(ss.CLASS_NAMES)
    assert len(set(ss.CLASS_NAMES)) == ss.N_CLASSES
    assert sum(not c.is_thing for c in ss.CLASSES) >= 5
    assert sum(c.is_thing for c in ss.CLASSES) >= 5
    assert len({c.color for c in ss.CLASSES}) == ss.N_CLASSES
    assert ss.CLASS_NAMES[ss.SKY] == "sky" and not ss.CLASSES[ss.SKY].is_thing


def test_things_are_drawn_from_the_hue_table_in_id_order():
    # sample_layout picks a thing's class from _THING_HUES' keys: another order would change
    # what every seed renders without a RENDER_VERSION bump
    assert tuple(_THING_HUES) == ss.THING_IDS


def test_scene_arrays_and_instances():
    scene = ss.render_scene(SEED, 48)
    assert scene.image.shape == (48, 48, 3) and scene.image.dtype == np.uint8
    assert scene.label.shape == (48, 48) and scene.label.dtype == np.uint8
    assert scene.depth.shape == (48, 48) and scene.depth.dtype == np.float32
    assert scene.instance.shape == (48, 48) and scene.instance.dtype == np.uint16
    assert scene.label.max() < ss.N_CLASSES
    assert set(scene.camera) >= {"height", "pitch", "fov"}
    assert 60 <= scene.camera["fov"] <= 90
    is_thing = np.array([c.is_thing for c in ss.CLASSES])[scene.label]
    assert np.all((scene.instance > 0) == is_thing)
    for inst in np.unique(scene.instance[scene.instance > 0]):  # one class per instance
        assert len(np.unique(scene.label[scene.instance == inst])) == 1
    wide = ss.render_scene(SEED, (40, 56))  # (H, W): same focal length in both directions
    assert wide.image.shape == (40, 56, 3) and wide.depth.shape == (40, 56)


def test_same_seed_same_scene_and_generator_seed_accepted():
    a = ss.render_scene(SEED, 40)
    b = ss.render_scene(np.random.default_rng(SEED), 40)
    for field in ("image", "label", "depth", "instance"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.camera == b.camera


def test_every_class_appears_and_things_are_not_tiny():
    labels = [ss.render_scene(np.random.default_rng([SEED, 0, i]), 64).label for i in range(50)]
    present = set(np.unique(np.stack(labels)).tolist())
    assert present == set(range(ss.N_CLASSES)), [ss.CLASS_NAMES[i] for i in
                                                   set(range(ss.N_CLASSES)) - present]
    things = np.isin(np.stack(labels), ss.THING_IDS).mean()
    assert 0.12 < things < 0.45, things


def test_ground_depth_matches_the_plane():
    for i in range(4):
        scene = ss.render_scene(np.random.default_rng([SEED, 1, i]), 64, n_things=0)
        expected = _analytic_ground_depth(scene.camera, scene.depth.shape)
        ground = np.isin(scene.label, GROUND)
        assert ground.sum() > 500
        np.testing.assert_allclose(scene.depth[ground], expected[ground], rtol=2e-4)
        # Every ground pixel is in front of the far plane; nothing is below the ground.
        assert np.all(scene.depth <= expected + 1e-3 * expected)


def test_sky_pixels_sit_on_the_far_plane():
    for i in range(4):
        scene = ss.render_scene(np.random.default_rng([SEED, 2, i]), 48)
        sky = scene.label == ss.SKY
        assert sky.any()
        assert np.all(scene.depth[sky] == ss.FAR_DEPTH)
        assert np.all(scene.depth[~sky] < ss.FAR_DEPTH)
        assert np.all(scene.depth > 0)


def test_label_and_depth_come_from_the_same_first_hit():
    scene = render_layout(_wall_and_sphere_layout(), 64)
    label, depth = scene.label, scene.depth
    # The sphere straddles the image centre, in front of the wall.
    assert label[32, 32] == SPHERE and scene.instance[32, 32] == 1
    sphere, wall = label == SPHERE, label == BUILDING
    assert sphere.sum() > 30 and wall.sum() > 300
    # Wall pixels: the front face is 19.5 m ahead of a level camera, whatever the ray.
    np.testing.assert_allclose(depth[wall], 19.5, rtol=1e-5)
    # Sphere pixels: the exact near root of each pixel's ray, solved here in float64.
    f = scene.camera["focal_px"]
    rows, cols = np.nonzero(sphere)
    dx, dz = (cols + 0.5 - 32) / f, -(rows + 0.5 - 32) / f
    oc = np.stack([np.zeros_like(dx), np.full_like(dx, -8.0), np.zeros_like(dx)])  # o - c
    d = np.stack([dx, np.ones_like(dx), dz])
    a, b, c = (d * d).sum(0), (oc * d).sum(0), (oc * oc).sum(0) - 1.0
    t = (-b - np.sqrt(b * b - a * c)) / a
    np.testing.assert_allclose(depth[sphere], t, rtol=1e-4)
    assert depth[sphere].max() < 8.0 and depth[sphere].min() >= 7.0 - 1e-4
    # Sky above the wall's top edge, ground below the horizon.
    assert label[0, 32] == ss.SKY and depth[0, 32] == ss.FAR_DEPTH
    assert label[63, 32] == GRASS


def test_the_sphere_casts_a_shadow():
    with_ball = render_layout(_wall_and_sphere_layout(True), 64)
    without = render_layout(_wall_and_sphere_layout(False), 64)
    both = (with_ball.label != SPHERE) & (without.label == with_ball.label)
    ratio = (with_ball.image.astype(float).sum(-1) + 1) / (without.image.astype(float).sum(-1) + 1)
    changed = both & (np.abs(ratio - 1) > 0.02)
    assert changed.sum() > 5  # the shadow darkens ground or wall ...
    assert np.all(ratio[changed] < 1)  # ... and never brightens anything


def test_generate_is_deterministic_and_resumable(tmp_path):
    a = ss.generate(tmp_path / "a", n_train=2, n_val=1, size=32, seed=SEED, progress=False)
    b = ss.generate(tmp_path / "b", n_train=2, n_val=1, size=32, seed=SEED, progress=False)
    files_a = _files(a)
    assert files_a == _files(b)
    expected = {f"{sub}/{split}/{split}_{i:05d}{ext}"
                for sub, ext in (("imgs", ".jpg"), ("labels", ".png"), ("depth_gt", ".npy"),
                                 ("instances", ".png"))
                for split, n in (("train", 2), ("val", 1)) for i in range(n)}
    assert set(files_a) == expected | {"synthscenes.json"}
    # Resume: a missing output is rendered again, byte for byte.
    (a / "labels" / "train" / "train_00001.png").unlink()
    ss.generate(a, n_train=2, n_val=1, size=32, seed=SEED, progress=False)
    assert _files(a) == files_a
    # The files hold what render_scene gives for (seed, split, index).
    scene = ss.render_scene(np.random.default_rng([SEED, SPLIT_IDS["val"], 0]), 32)
    np.testing.assert_array_equal(np.load(a / "depth_gt/val/val_00000.npy"), scene.depth)
    np.testing.assert_array_equal(np.asarray(Image.open(a / "labels/val/val_00000.png")),
                                  scene.label)
    np.testing.assert_array_equal(np.asarray(Image.open(a / "instances/val/val_00000.png")),
                                  scene.instance)
    with Image.open(a / "imgs/val/val_00000.jpg") as im:
        assert im.mode == "RGB" and im.size == (32, 32)
        assert np.abs(np.asarray(im).astype(int) - scene.image).mean() < 12


def test_rerun_with_other_settings_is_refused(tmp_path):
    out = ss.generate(tmp_path, n_train=3, n_val=1, size=24, seed=SEED, progress=False)
    with pytest.raises(DepthGError, match="--force"):
        ss.generate(out, n_train=3, n_val=1, size=24, seed=SEED + 1, progress=False)
    ss.generate(out, n_train=1, n_val=1, size=32, seed=SEED, progress=False, force=True)
    assert sorted(p.name for p in (out / "imgs" / "train").iterdir()) == ["train_00000.jpg"]
    with Image.open(out / "imgs/train/train_00000.jpg") as im:
        assert im.size == (32, 32)
    with pytest.raises(DepthGError, match="size"):
        ss.generate(tmp_path / "bad", n_train=1, n_val=1, size=4, seed=0, progress=False)


def test_cli_smoke(tmp_path):
    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "depthg_lib.data.synthscenes", "--out", str(out),
           "--n-train", "2", "--n-val", "1", "--size", "32", "--seed", "3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(list((out / "imgs" / "train").glob("*.jpg"))) == 2
    assert (out / "depth_gt" / "val" / "val_00000.npy").exists()
    again = subprocess.run(cmd[:-1] + ["4"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.startswith("error:") and "--force" in again.stderr
    assert "Traceback" not in again.stderr


def test_scene_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from depthg_lib.viz.scenes import show_scenes

    out = ss.generate(tmp_path, n_train=0, n_val=2, size=32, seed=SEED, progress=False)
    fig = show_scenes(out, n=4)
    assert fig.axes[0].images[0].get_array().shape == (32, 32, 3)
    assert len(fig.axes) == 4 * 2 + 1  # two scenes + the depth colour bar
    with pytest.raises(DepthGError, match="no images"):
        show_scenes(tmp_path, split="train")
    plt.close("all")
