"""Two views of one SynthScenes layout and the exact pixel correspondences between them (issue 12).

The self-supervised signal of `--objective multiview`: the renderer draws a scene layout (what
stands where) once and renders it from two camera poses, each with its own light and a small
per-view jitter of every material's colour. A pixel of view A and the pixel of view B that
sees the same 3-D point are a positive pair; the renderer's depth says where that point is.
Nothing about classes or instances is used: only geometry, the way multi-view and video
methods use camera motion.

Geometry (the renderer's conventions, `depthg_lib.data.synthscenes`): world x right, y forward,
z up; a camera at (0, 0, height) looks along +y, pitched by `pitch` degrees; depth is the
distance along the optical axis. Pixel (u, v) (column, row, centre at +0.5) has the ray

    d = (x, cos p + y sin p, sin p − y cos p),  x = (u + ½ − W/2) / f,  y = (v + ½ − H/2) / f

whose forward component is 1, so the 3-D point is P = (0, 0, h) + depth · d. View B's camera
stands at (tx, ty) on the ground of A's world, turned left by `yaw`; `move_layout` re-expresses
the whole layout in B's frame, P_B = R(−yaw) (P − t), and `project` maps P_B into B's pixels.
A match is kept when it lands inside B and B's own depth there agrees (occlusion check). Sky
(depth at the far plane) is a point at infinity: only the rotation moves it, and it must land
on sky in B.

Why the views differ the way they do (measured with `python -m depthg_lib.pretrain pairs
--check`, labels read only by that check): the ground's procedural noise (texture phase,
wobble of lake and sand outlines) is evaluated at world coordinates, so a moved camera sees
slightly different outlines; small moves keep the fraction of matches whose label differs
low.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DepthGError

# Data seed of the view-pair pools: disjoint from the evaluation seeds of the benchmark.
PAIR_DATA_SEED = 3000
FAR = 100.0  # the renderer's far plane (synthscenes.FAR_DEPTH)


# --------------------------------------------------------------------------- poses

@dataclasses.dataclass(frozen=True)
class Move:
    """Where view B's camera stands in view A's world: ground position (m), left turn (rad)."""

    tx: float = 0.0
    ty: float = 0.0
    yaw: float = 0.0

    def to_b(self, x, y):
        """A-world ground coordinates → B-world (B's camera at the origin looking along +y)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        px, py = x - self.tx, y - self.ty
        return c * px + s * py, -s * px + c * py

    def to_a(self, x, y):
        """Inverse of `to_b`."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return c * x - s * y + self.tx, s * x + c * y + self.ty

    def rotate_to_b(self, x, y):
        """A direction (no translation) into B's frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return c * x + s * y, -s * x + c * y


def unproject(u, v, depth, cam: dict):
    """Pixel (u, v) at `depth` → 3-D point in its camera's world; sky pixels (depth ≥ far)
    → the unit-forward ray direction instead (a point at infinity). Works on numpy or torch."""
    W, H = cam["width"], cam["height_px"]
    f = cam["focal_px"]
    p = math.radians(cam["pitch"])
    cp, sp = math.cos(p), math.sin(p)
    x = (u + 0.5 - W / 2) / f
    y = (v + 0.5 - H / 2) / f
    dx, dy, dz = x, cp + y * sp, sp - y * cp
    return dx * depth, dy * depth, cam["height"] + dz * depth, (dx, dy, dz)


def project(px, py, pz, cam: dict, direction: bool = False):
    """3-D point (or, with `direction`, a ray direction) in a camera's world → (u, v, depth)."""
    W, H = cam["width"], cam["height_px"]
    f = cam["focal_px"]
    p = math.radians(cam["pitch"])
    cp, sp = math.cos(p), math.sin(p)
    rz = pz if direction else pz - cam["height"]
    t = py * cp + rz * sp  # forward component
    up = -py * sp + rz * cp
    safe = t if not isinstance(t, torch.Tensor) else t.clamp_min(1e-6)
    if isinstance(t, np.ndarray):
        safe = np.maximum(t, 1e-6)
    x, y = px / safe, -up / safe
    return x * f + W / 2 - 0.5, y * f + H / 2 - 0.5, t


def correspond_batch(u: torch.Tensor, v: torch.Tensor, depth_a: torch.Tensor,
                     cams_a: torch.Tensor, depth_b: torch.Tensor, cams_b: torch.Tensor,
                     moves: torch.Tensor, rel_tol: float = 0.03, abs_tol: float = 0.05):
    """Float pixel positions in view B of pixels (u, v) of view A, and which are valid, for a
    batch of pairs at once.

    u, v: (B, n) A-pixel coordinates; depth_a, depth_b: (B, H, W) metres; cams: (B, 4)
    [height, pitch (deg), fov (deg), focal_px]; moves: (B, 3) [tx, ty, yaw]. A match is valid
    when it lies inside B, in front of B's camera, and B's depth at the nearest pixel agrees
    with the point's depth in B (within `rel_tol` · depth + `abs_tol`): otherwise something
    occludes it in B. Sky (far plane) matches sky only. Returns (ub, vb, valid), each (B, n).
    """
    B, H, W = depth_a.shape
    Hb, Wb = depth_b.shape[-2:]
    u64, v64 = u.double(), v.double()
    ia = v.round().long().clamp(0, H - 1) * W + u.round().long().clamp(0, W - 1)
    da = depth_a.flatten(1).gather(1, ia).double()
    sky_a = da >= FAR * 0.999

    def terms(cams):
        c = cams.double()
        p = torch.deg2rad(c[:, 1:2])
        return c[:, 0:1], torch.cos(p), torch.sin(p), c[:, 3:4]

    ha, cpa, spa, fa = terms(cams_a)
    x = (u64 + 0.5 - W / 2) / fa
    y = (v64 + 0.5 - H / 2) / fa
    dx, dy, dz = x, cpa + y * spa, spa - y * cpa  # ray with forward component 1
    d = torch.where(sky_a, torch.ones_like(da), da)
    px, py, pz = dx * d, dy * d, ha + dz * d
    m = moves.double()
    c, s = torch.cos(m[:, 2:3]), torch.sin(m[:, 2:3])
    qx, qy = px - m[:, 0:1], py - m[:, 1:2]
    # into B's frame: a point moves with translation and rotation, a direction (sky) rotates
    X = torch.where(sky_a, c * dx + s * dy, c * qx + s * qy)
    Y = torch.where(sky_a, -s * dx + c * dy, -s * qx + c * qy)
    hb, cpb, spb, fb = terms(cams_b)
    Z = torch.where(sky_a, dz, pz - hb)
    tb = Y * cpb + Z * spb  # forward component = depth in B
    up = -Y * spb + Z * cpb
    safe = tb.clamp_min(1e-6)
    ub = X / safe * fb + Wb / 2 - 0.5
    vb = -up / safe * fb + Hb / 2 - 0.5
    inside = (tb > 1e-3) & (ub > -0.5) & (ub < Wb - 0.5) & (vb > -0.5) & (vb < Hb - 0.5)
    ib = vb.round().long().clamp(0, Hb - 1) * Wb + ub.round().long().clamp(0, Wb - 1)
    db = depth_b.flatten(1).gather(1, ib).double()
    sky_b = db >= FAR * 0.999
    agree = (tb - db).abs() <= rel_tol * tb + abs_tol
    valid = inside & torch.where(sky_a, sky_b, ~sky_b & agree)
    return ub.float(), vb.float(), valid


def cam_row(cam: dict) -> torch.Tensor:
    return torch.tensor([[cam["height"], cam["pitch"], cam["fov"], cam["focal_px"]]],
                        dtype=torch.float64)


def correspond(u, v, depth_a: torch.Tensor, cam_a: dict, depth_b: torch.Tensor, cam_b: dict,
               move: Move, rel_tol: float = 0.03, abs_tol: float = 0.05):
    """`correspond_batch` for one pair: u, v of any shape, depths (H, W), camera dicts."""
    shape = u.shape
    ub, vb, ok = correspond_batch(
        u.reshape(1, -1), v.reshape(1, -1), depth_a[None], cam_row(cam_a), depth_b[None],
        cam_row(cam_b), torch.tensor([[move.tx, move.ty, move.yaw]], dtype=torch.float64),
        rel_tol, abs_tol)
    return ub.view(shape), vb.view(shape), ok.view(shape)


def inverse_moves(moves: torch.Tensor) -> torch.Tensor:
    """(B, 3) moves A→B → the moves B→A."""
    tx, ty, yaw = moves.unbind(-1)
    c, s = torch.cos(yaw), torch.sin(yaw)
    return torch.stack([-(c * tx + s * ty), -(-s * tx + c * ty), -yaw], -1)


# --------------------------------------------------------------------------- second view

def move_layout(layout, move: Move):
    """The same layout expressed in the frame of a camera moved by `move` (every position and
    heading re-expressed; shapes, looks and the noise seed unchanged)."""
    from ..data import synthscenes as ss

    rep = dataclasses.replace

    def shape(s):
        c = s.center
        x, y = move.to_b(c[0], c[1])
        s = rep(s, center=(x, y, *c[2:]))
        return rep(s, yaw=s.yaw - move.yaw) if hasattr(s, "yaw") else s

    def look(lk):
        ax = lk.axis
        x, y = move.rotate_to_b(ax[0], ax[1])
        return rep(lk, axis=(x, y, *ax[2:]))

    objects = tuple(rep(o, parts=tuple((shape(s), look(lk)) for s, lk in o.parts))
                    for o in layout.objects)
    g = layout.ground

    def blob(b):
        if b is None:
            return None
        return rep(b, center=move.to_b(*b.center), angle=b.angle - move.yaw)

    roads = tuple(rep(r, point=move.to_b(*r.point), angle=r.angle - move.yaw) for r in g.roads)
    ground = rep(g, lake=blob(g.lake), sand=blob(g.sand), roads=roads,
                 grass=look(g.grass), road_look=look(g.road_look), sand_look=look(g.sand_look),
                 water_look=look(g.water_look))
    sx, sy = move.rotate_to_b(*layout.sky.sun_dir[:2])
    sky = rep(layout.sky, sun_dir=(sx, sy, layout.sky.sun_dir[2]))
    assert isinstance(layout, ss.Layout)
    return rep(layout, objects=objects, ground=ground, sky=sky)


def _jitter_colour(rgb, rng, hue: float, sat: float, val: float):
    import colorsys

    h, s, v = colorsys.rgb_to_hsv(*[min(max(c, 0.0), 1.0) for c in rgb])
    h = (h + rng.uniform(-hue, hue)) % 1.0
    s = min(max(s * math.exp(rng.uniform(-sat, sat)), 0.0), 1.0)
    v = min(max(v * math.exp(rng.uniform(-val, val)), 0.0), 1.0)
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v))


def jitter_appearance(layout, rng: np.random.Generator, hue: float = 0.03, sat: float = 0.15,
                      val: float = 0.15, sun: bool = True):
    """Per-view material and light jitter: every look's two colours get a small random
    hue / saturation / value change, the sun moves to a new direction, exposure and ambient
    change. Shapes and positions stay: the classes' geometry is what both views share."""
    rep = dataclasses.replace

    def look(lk):
        return rep(lk, color=_jitter_colour(lk.color, rng, hue, sat, val),
                   color2=_jitter_colour(lk.color2, rng, hue, sat, val))

    objects = tuple(rep(o, parts=tuple((s, look(lk)) for s, lk in o.parts))
                    for o in layout.objects)
    g = layout.ground
    ground = rep(g, grass=look(g.grass), road_look=look(g.road_look),
                 sand_look=look(g.sand_look), water_look=look(g.water_look))
    sky = layout.sky
    if sun:
        elev, azim = math.radians(rng.uniform(18, 65)), rng.uniform(-math.pi, math.pi)
        sky = rep(sky, sun_dir=(math.cos(elev) * math.sin(azim),
                                math.cos(elev) * math.cos(azim), math.sin(elev)),
                  ambient=float(np.clip(sky.ambient + rng.uniform(-0.08, 0.08), 0.35, 0.7)))
    cam = rep(layout.camera, exposure=float(rng.uniform(0.9, 1.12)))
    return rep(layout, objects=objects, ground=ground, sky=sky, camera=cam)


@dataclasses.dataclass(frozen=True)
class PairConfig:
    """How far view B's camera moves from view A's, and how much appearance changes."""

    max_shift: float = 1.5  # metres, sideways and forward/back
    max_yaw: float = 12.0  # degrees
    max_height: float = 0.5  # metres (camera height change)
    max_pitch: float = 6.0  # degrees
    max_fov: float = 8.0  # degrees
    hue: float = 0.03
    sat: float = 0.15
    val: float = 0.15


def render_pair(seed, size: int, cfg: PairConfig = PairConfig()):
    """Render one layout from two poses with per-view appearance jitter.

    Returns (scene_a, scene_b, cam_a, cam_b, move); cams carry pixel sizes for `correspond`.
    Scenes include labels, but `write_pool` stores only images, depth and cameras.
    """
    from ..data import synthscenes as ss

    rng = np.random.default_rng(seed)
    base = ss.sample_layout(rng)
    cam0 = base.camera
    move = Move(rng.uniform(-cfg.max_shift, cfg.max_shift),
                rng.uniform(-cfg.max_shift, cfg.max_shift),
                math.radians(rng.uniform(-cfg.max_yaw, cfg.max_yaw)))
    cam_b = dataclasses.replace(
        cam0, height=float(np.clip(cam0.height + rng.uniform(-cfg.max_height, cfg.max_height),
                                   0.8, 3.0)),
        pitch=float(np.clip(cam0.pitch + rng.uniform(-cfg.max_pitch, cfg.max_pitch), -30, 2)),
        fov=float(np.clip(cam0.fov + rng.uniform(-cfg.max_fov, cfg.max_fov), 55, 95)))
    la = jitter_appearance(base, rng, cfg.hue, cfg.sat, cfg.val)
    lb = jitter_appearance(dataclasses.replace(move_layout(base, move), camera=cam_b), rng,
                           cfg.hue, cfg.sat, cfg.val)
    sa, sb = ss.render_layout(la, size), ss.render_layout(lb, size)

    def cam(scene):
        return {**scene.camera, "width": size, "height_px": size}

    return sa, sb, cam(sa), cam(sb), move


# --------------------------------------------------------------------------- pair pools

def _pool_settings(n: int, size: int, seed: int, cfg: PairConfig) -> dict:
    from ..data.synthscenes import RENDER_VERSION

    return {"stage": "view_pairs", "n": n, "size": size, "seed": seed,
            "renderer_version": RENDER_VERSION, "pair": dataclasses.asdict(cfg)}


def _write_shard(path: Path, first: int, last: int, size: int, seed: int,
                 cfg: PairConfig) -> None:
    from ..io import atomic_path

    imgs, depth, cams, moves = [], [], [], []
    for i in range(first, last):
        sa, sb, ca, cb, mv = render_pair([seed, i], size, cfg)
        imgs.append(np.stack([sa.image, sb.image]))
        depth.append(np.stack([sa.depth, sb.depth]).astype(np.float16))
        cams.append([[c["height"], c["pitch"], c["fov"], c["focal_px"]] for c in (ca, cb)])
        moves.append([mv.tx, mv.ty, mv.yaw])
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, images=np.stack(imgs), depth=np.stack(depth),
                 cams=np.asarray(cams, np.float64), moves=np.asarray(moves, np.float64))


def write_pool(out: str | os.PathLike, n: int, size: int = 128, seed: int = PAIR_DATA_SEED,
               cfg: PairConfig = PairConfig(), shard: int = 250, workers: int = 1) -> Path:
    """Render `n` view pairs into `out` as .npz shards of `shard` pairs (resumable; `workers`
    processes): images (uint8), depth (float16), cameras and moves. No labels or instance ids
    are stored: nothing the pretraining reads knows about classes."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    from ..io import check_stage_settings

    out = Path(out)
    check_stage_settings(out, "view_pairs", _pool_settings(n, size, seed, cfg))
    jobs = [(out / f"pairs_{k:04d}.npz", s0, min(n, s0 + shard))
            for k, s0 in enumerate(range(0, n, shard))]
    jobs = [j for j in jobs if not j[0].exists()]
    if workers <= 1:
        for path, a, b in tqdm(jobs, desc="view-pair shards"):
            _write_shard(path, a, b, size, seed, cfg)
        return out
    with ProcessPoolExecutor(workers) as ex:
        futs = [ex.submit(_write_shard, path, a, b, size, seed, cfg) for path, a, b in jobs]
        for f in tqdm(futs, desc="view-pair shards"):
            f.result()
    return out


def load_pool(out: str | os.PathLike, limit: int | None = None) -> dict[str, np.ndarray]:
    """All shards of a pool: images (N,2,H,W,3) uint8, depth (N,2,H,W) float16, cams (N,2,4)
    [height, pitch, fov, focal_px], moves (N,3) [tx, ty, yaw]."""
    paths = sorted(Path(out).glob("pairs_*.npz"))
    if not paths:
        raise DepthGError(f"no view pairs in {out}; render them with "
                          f"`python -m depthg_lib.pretrain pairs --out {out}`")
    parts = [dict(np.load(p)) for p in paths]
    pool = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if limit is not None:
        pool = {k: v[:limit] for k, v in pool.items()}
    return pool


def cam_dict(row: np.ndarray, size: int) -> dict:
    return {"height": float(row[0]), "pitch": float(row[1]), "fov": float(row[2]),
            "focal_px": float(row[3]), "width": size, "height_px": size}


def check_pairs(n: int = 40, size: int = 64, seed: int = PAIR_DATA_SEED,
                cfg: PairConfig = PairConfig()) -> dict:
    """Diagnostics of the pair geometry (labels read here only, never by training): fraction of
    A pixels with a valid match, and fraction of valid matches whose label differs."""
    grid = torch.arange(size, dtype=torch.float32)
    v, u = torch.meshgrid(grid, grid, indexing="ij")
    kept, wrong = [], []
    for i in range(n):
        sa, sb, ca, cb, mv = render_pair([seed + 7919, i], size, cfg)
        ub, vb, ok = correspond(u, v, torch.from_numpy(sa.depth), ca,
                                torch.from_numpy(sb.depth), cb, mv)
        lb = sb.label[vb.round().long().clamp(0, size - 1), ub.round().long().clamp(0, size - 1)]
        kept.append(ok.float().mean().item())
        wrong.append(float((torch.from_numpy(sa.label) != torch.from_numpy(lb))[ok]
                           .float().mean()) if ok.any() else 0.0)
    return {"valid_fraction": float(np.mean(kept)), "label_disagreement": float(np.mean(wrong))}


# --------------------------------------------------------------------------- checkpoints

def build_vit(arch: dict | None = None) -> torch.nn.Module:
    """The embedded ViT's timm architecture, with optional overrides (e.g. a wider ViT for a
    GPU run; the library's loader only accepts the shipped `VIT_CONFIG`)."""
    from timm.models.vision_transformer import VisionTransformer

    from ..embedded import VIT_CONFIG

    return VisionTransformer(**{**VIT_CONFIG, **(arch or {})})


def load_checkpoint_vit(path: str | os.PathLike) -> tuple[torch.nn.Module, int]:
    """The backbone of any pretraining checkpoint (EMA teacher when there is one) in eval mode,
    and the checkpoint's step."""
    from .export import vit_backbone_state

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError) as err:
        raise DepthGError(f"cannot read checkpoint {path} ({err}); pass a checkpoint.pt "
                          "written by `python -m depthg_lib.pretrain vit`") from None
    state = ckpt["trainer"]
    vit = build_vit(state["config"].get("arch"))
    vit.load_state_dict(vit_backbone_state(state))
    return vit.eval(), int(state["step"])


def views_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float (..., 3, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255
    return x.movedim(-1, -3)


def patch_centres(grid: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (u, v) of the centres of a grid × grid patch map."""
    c = torch.arange(grid, dtype=torch.float32) * patch + (patch - 1) / 2
    v, u = torch.meshgrid(c, c, indexing="ij")
    return u, v


def sample_at(fmap: torch.Tensor, u: torch.Tensor, v: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear read of a (B, C, g, g) patch map at pixel positions (B, ...) of a size-px image."""
    gx = (u + 0.5) / size * 2 - 1
    gy = (v + 0.5) / size * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(len(fmap), -1, 1, 2).to(fmap.dtype)
    out = F.grid_sample(fmap, grid, mode="bilinear", align_corners=False, padding_mode="border")
    return out[..., 0].transpose(1, 2)  # (B, n, C)
