"""Stand-ins: datasets in the real tree (docs/method.md §11), formats, image sizes and
`round(F × N)` counts, read by the real readers — every file a byte copy of a few SynthScenes
scenes rendered small, upscaled and given noise so that files weigh what real ones do; backbone
weights and kNN features of the real shapes; the FLOPs of a ViT forward."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.readers import get_reader
from ..data.synthscenes.layout import render_scene
from ..io import atomic_path
from ..models import build_timm_vit

# Cityscapes fine annotations: images per city (train 2,975, val 500).
_CITIES = {
    "train": {"aachen": 174, "bochum": 96, "bremen": 316, "cologne": 154, "darmstadt": 85,
              "dusseldorf": 221, "erfurt": 109, "hamburg": 248, "hanover": 196, "jena": 119,
              "krefeld": 99, "monchengladbach": 94, "strasbourg": 365, "stuttgart": 196,
              "tubingen": 144, "ulm": 95, "weimar": 142, "zurich": 122},
    "val": {"frankfurt": 267, "lindau": 59, "munster": 174},
}
# The sizes (width, height) a COCO image comes in most often (longest side 640), in turn.
_COCO_SIZES = ((640, 480), (640, 427), (640, 480), (480, 640), (640, 426), (640, 480),
               (500, 375), (640, 480), (427, 640), (640, 360))


@dataclass(frozen=True)
class DatasetFacts:
    """A real dataset's split sizes and image size(s); the noise approaches its bytes per image."""

    counts: dict[str, int]
    sizes: tuple[tuple[int, int], ...]
    noise: float  # std of the noise added to the upscaled render, in grey levels


FACTS = {
    # curated STEGO lists; COCO 2017's train images average ≈ 160 kB (18 GB / 118k)
    "cocostuff27": DatasetFacts({"train": 49_629, "val": 2_175}, _COCO_SIZES, 24.0),
    # leftImg8bit_trainvaltest.zip: ≈ 11 GB for 5,000 PNGs of 2048×1024
    "cityscapes": DatasetFacts({"train": 2_975, "val": 500}, ((2048, 1024),), 0.5),
    # IIC's Potsdam: 38 tiles of 6000² halved, cut into 200², stored as uncompressed uint8 .mat
    "potsdam": DatasetFacts({"train": 4_545, "val": 855}, ((200, 200),), 6.0),
}
# the split lists a reader reads (Cityscapes lists its folders instead)
_LISTS = {"cocostuff27": {split: f"curated/{split}2017/Coco164kFull_Stuff_Coarse_7.txt"
                          for split in ("train", "val")},
          "potsdam": {"train": "labelled_train.txt", "val": "labelled_test.txt"}}


def scaled_count(n: int, scale: float) -> int:
    """round(F × N), but at least one image, so every split exists."""
    return max(1, int(round(scale * n)))


def split_names(dataset: str, split: str, n: int) -> list[str]:
    """`n` names in the dataset's own naming, spread over the whole split (all cities)."""
    counts = FACTS[dataset].counts
    total, offset = counts[split], 0 if split == "train" else counts["train"]
    if dataset == "cityscapes":
        full = [f"{city}_{seq:06d}_000019" for city, count in _CITIES[split].items()
                for seq in range(count)]
    else:  # COCO's ids have 12 digits; train ∩ val = ∅
        full = [f"{offset + i + 1:012d}" if dataset == "cocostuff27" else str(offset + i)
                for i in range(total)]
    keep = np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))
    return [full[i] for i in keep]


def _label_values(dataset: str, classes: np.ndarray) -> np.ndarray:
    """SynthScenes class ids (0..11) as the dataset stores labels, with some ignore."""
    if dataset == "cocostuff27":
        out = (classes.astype(np.int64) * 15 + 3) % 182  # fine ids 0..181
    elif dataset == "cityscapes":
        out = 7 + (classes.astype(np.int64) * 2) % 27  # labelIds 7..33
    else:
        out = classes.astype(np.int64) % 6  # Potsdam ids 0..5
    out[: max(1, out.shape[0] // 40)] = 255 if dataset != "cityscapes" else 0  # a band of ignore
    return out


def _render(seed: int, size: tuple[int, int], noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), class ids (H, W)) at `size` = (W, H): a small render upscaled."""
    scene = render_scene(seed, (max(8, size[1] // 4), max(8, size[0] // 4)))  # (H, W) / 4
    image = np.asarray(Image.fromarray(scene.image).resize(size, Image.BILINEAR), np.float32)
    labels = np.asarray(Image.fromarray(scene.label).resize(size, Image.NEAREST))
    image += np.random.default_rng(seed).normal(0.0, noise, image.shape).astype(np.float32)
    return image.clip(0, 255).astype(np.uint8), labels


def _encode(array: np.ndarray, fmt: str) -> bytes:
    """A JPEG, a PNG (fast zlib: 0.5 s, not 4, at 2048×1024) or a .mat of variable `fmt`."""
    buf = io.BytesIO()
    if fmt in ("JPEG", "PNG"):  # each encoder ignores the other's option
        Image.fromarray(array).save(buf, format=fmt, quality=90, compress_level=1)
    else:
        import scipy.io  # only Potsdam's .mat files need scipy

        scipy.io.savemat(buf, {fmt: array})
    return buf.getvalue()


def render_bases(dataset: str) -> list[dict[str, bytes]]:
    """Encoded (image, label) files per base (rendered scene), in the real formats."""
    facts = FACTS[dataset]
    per_size = 1 if len(facts.sizes) > 1 else 3  # COCO: one per size, sizes in turn; else 3
    bases = []
    for i, size in enumerate(s for s in facts.sizes for _ in range(per_size)):
        image, classes = _render(i + 1, size, facts.noise)
        labels = _label_values(dataset, classes)
        if dataset == "potsdam":
            rgbir = np.concatenate([image, image[..., :1]], axis=-1)  # R, G, B, infrared
            files = {"image": _encode(rgbir, "img"),
                     "label": _encode(labels.astype(np.int32), "gt")}
        else:
            files = {"image": _encode(image, "JPEG" if dataset == "cocostuff27" else "PNG"),
                     "label": _encode(labels.astype(np.uint8), "PNG")}
        bases.append(files)
    return bases


def _write(path: Path, data: bytes) -> bool:
    """Write atomically unless present with that size."""
    if path.is_file() and path.stat().st_size == len(data):
        return False
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def write_standin(dataset: str, root: Path, scale: float) -> dict:
    """The stand-in tree of `dataset` at scale F, resumably, split lists last; counts, bytes."""
    reader = get_reader(dataset, root)
    bases = render_bases(dataset)
    out = {"written": 0, "images": {}, "bytes": {"image": 0, "label": 0}}
    for split in ("train", "val"):
        names = split_names(dataset, split, scaled_count(FACTS[dataset].counts[split], scale))
        out["images"][split] = len(names)
        for i, name in enumerate(names):
            files = bases[i % len(bases)]
            for kind, path in (("image", reader.image_path(split, name)),
                               ("label", reader.label_path(split, name))):
                out["written"] += _write(path, files[kind])
                out["bytes"][kind] += len(files[kind])
        if dataset in _LISTS:
            _write(root / _LISTS[dataset][split], "".join(f"{n}\n" for n in names).encode())
    return out


def write_backbone_standin(name: str, path: Path) -> dict:
    """Fixed-seed random weights of the timm architecture, loaded like a downloaded `.pth`."""
    written = not path.is_file()
    if written:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            vit = build_timm_vit(name)
        with atomic_path(path) as tmp:
            torch.save(vit.state_dict(), tmp)
    return {"file": str(path), "bytes": path.stat().st_size, "written": written}


def vit_shape(name: str) -> tuple[int, int, int]:
    """(embedding width, blocks, patch size) of backbone `name`, built without weights."""
    with torch.device("meta"):
        vit = build_timm_vit(name)
    patch = np.atleast_1d(vit.patch_embed.patch_size)[0]
    return int(vit.embed_dim), len(vit.blocks), int(patch)


def vit_forward_flops(name: str, res: int) -> float:
    """FLOPs of one forward at res × res: per block the linear layers (12·d² per token: qkv 3d²,
    projection d², MLP 8d²) and attention (2·T²·d), two per multiply-add."""
    width, blocks, patch = vit_shape(name)
    tokens = (res // patch) ** 2 + 1
    return 2.0 * blocks * (tokens * 12 * width * width + 2 * tokens * tokens * width)


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 random unit rows: stand-in kNN features of the real N and D."""
    rng, feats = np.random.default_rng(seed), np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # in slices: no float64 copy of the whole table
        part = rng.standard_normal((min(65536, n - start), dim), dtype=np.float32)
        feats[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return feats
