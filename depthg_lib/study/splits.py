"""The study's data: train / tune / report splits by SynthScenes seed, at each knob setting."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..config import Profile, profile_arg
from ..crop import CropReader, run_crop_stage
from ..data import get_reader, synthscenes
from ..depth import normalise_depth, run_depth_stage
from ..errors import DepthGError
from ..evalset import as_targets, resize_crop, to_tensor
from ..features import CachedSplit, source_digest
from ..io import atomic_path, json_digest, load_json, save_json
from ..knn import load_knn, pool_features, run_knn_stage, topk_neighbours
from ..nuisance import Nuisance, crop_sources, image_sources
from ..premise import fps_thing_share, same_class_auroc
from ..train import ArrayCrops, TrainData
from ..train.data import cache_settings, prepare_caches
from ..transforms import resize_center_crop

KNOB = "camouflage"
KNOB_MEANING = ("SynthScenes `camouflage`: the share of things (box, sphere, cylinder, cone, "
                "tree, person) that wear the look — colours and texture — of the ground they "
                "stand on, so that appearance alone cannot tell them from it")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of the study's knobs: camouflage and nuisance strength (0 = none)."""

    camouflage: float
    nuisance: float = 0.0

    @property
    def key(self) -> str:
        """`0`, `1` (camouflage alone) or `0+nuisance2` (camouflage 0, nuisance 2)."""
        base = f"{float(self.camouflage):g}"
        return base if not self.nuisance else f"{base}+nuisance{float(self.nuisance):g}"

    @property
    def label(self) -> str:
        text = f"{KNOB} {float(self.camouflage):g}"
        return text if not self.nuisance else f"{text}, nuisance {float(self.nuisance):g}"


@dataclasses.dataclass
class ImageSet:
    """A split's images at `eval_res`: features (and mirrored), labels, raw labels, depth."""

    feats: torch.Tensor
    feats_flip: torch.Tensor
    labels: np.ndarray
    raw_labels: np.ndarray
    depth: np.ndarray


@dataclasses.dataclass
class KnobData:
    """One setting, prepared once: profile, per fidelity training data and images, premise."""

    profile: Profile
    train_data: dict
    tune: dict
    report: dict
    premise: dict


def knob_profile(profile: Profile, knob: float) -> Profile:
    """The profile at a knob setting: its own dataset at its own camouflage, else another."""
    if math.isclose(knob, profile.synth_camouflage):
        return profile
    return profile.replace(synth_camouflage=float(knob),
                           dataset_dir=f"{profile.dataset_dir or profile.dataset}_{KNOB}{knob:g}")


def split_dir(profile: Profile, role: str, knob: float) -> Path:
    """Folder of the tune or report split's scenes at a knob setting."""
    seed = profile.tune_seed if role == "tune" else profile.report_seed
    base = profile.dataset_dir or profile.dataset
    return profile.paths.data_root / f"{base}_{role}{seed}_{KNOB}{float(knob):g}"


def split_size(profile: Profile, role: str) -> int:
    if role == "report" and profile.study_n_report:
        return profile.study_n_report
    return profile.synth_n_val


def _generate(out: Path, n_train: int, n_val: int, size: int, seed: int, knob: float,
              progress: bool) -> Path:
    return synthscenes.generate(out, n_train=n_train, n_val=n_val, size=size, seed=seed,
                                progress=progress, **({KNOB: float(knob)} if knob else {}))


@torch.no_grad()
def load_image_set(folder: Path, size: int, fidelity: str, backbone, device,
                   batch_size: int = 16) -> ImageSet:
    """A folder's `val` split at `size`, resized as evaluation does, with backbone features."""
    reader = get_reader("synthscenes", folder)
    names = list(reader.names("val"))
    if not names:
        raise DepthGError(f"{folder} holds no val images; delete the folder and run the study "
                          "again")
    mode = "nearest" if fidelity == "released" else "bilinear"
    resized, raw = zip(*(resize_crop(reader.load_image("val", n), size,
                                     reader.load_label("val", n), mode) for n in names))
    depth = [resize_center_crop(normalise_depth(reader.load_gt_depth("val", n)).astype(np.float32),
                                size, "bilinear") for n in names]
    feats, flips = [], []
    for start in range(0, len(resized), batch_size):
        x = to_tensor(resized[start:start + batch_size]).to(device)
        feats.append(backbone(x).float().cpu())
        flips.append(backbone(x.flip(dims=[3])).float().cpu())
    raw = np.stack(raw)
    return ImageSet(torch.cat(feats), torch.cat(flips), as_targets(raw, len(reader.class_names)),
                    raw, np.stack(depth))


def prepare_knob(profile: Profile, knob: float, fidelities, backbone, device, progress
                 ) -> KnobData:
    """Render, depth, crop and mine the train split (done work skipped); tune and report."""
    kp = knob_profile(profile, knob)
    _generate(kp.paths.dataset_dir, kp.synth_n_train, kp.synth_n_val, kp.synth_size,
              kp.synth_seed, kp.synth_camouflage, progress)
    run_depth_stage(kp, device=str(device), progress=progress)
    run_crop_stage(kp, split="all", progress=progress)
    run_knn_stage(kp, device=str(device), progress=progress)
    folders = {role: split_dir(profile, role, knob) for role in ("tune", "report")}
    for role, seed in (("tune", profile.tune_seed), ("report", profile.report_seed)):
        _generate(folders[role], 0, split_size(profile, role), profile.synth_size, seed, knob,
                  progress)
    tune, report = ({f: load_image_set(folders[role], profile.eval_res, f, backbone, device)
                     for f in fidelities} for role in ("tune", "report"))
    # the tune split, as rendered, is the validation set of every training run (its curves)
    reader = get_reader("synthscenes", folders["tune"])
    names = list(reader.names("val"))
    labels = np.stack([reader.load_label("val", n) for n in names]).astype(np.uint8)
    raw_tune = ArrayCrops(np.stack([reader.load_image("val", n) for n in names]), labels,
                          np.zeros(labels.shape, dtype=np.uint16))  # no depth
    crops = CropReader(kp.paths.crop_dir, "train", profile=profile_arg(kp))
    knn = load_knn(kp.paths.knn_file("train"))
    train_data = {}
    for fidelity in fidelities:
        cache = (kp.paths.data_root / "features" / f"study_{kp.paths.crop_dir.name}_"
                 f"{kp.backbone.replace('/', '_')}_{kp.res}_{fidelity}_tune{profile.tune_seed}")
        data = TrainData(train=crops, knn=knn, val=raw_tune, cache_dir=cache,
                         key=f"{kp.paths.crop_dir}|tune{profile.tune_seed}|{KNOB}{knob}")
        train_data[fidelity] = (data, prepare_caches(kp.replace(fidelity=fidelity), data,
                                                     backbone, device, 0, 1, progress))
    return KnobData(kp, train_data, tune, report, measure_premise(tune, profile, backbone))


def measure_premise(tune: dict, profile: Profile, backbone) -> dict:
    """DepthG's premise on tune: same-class AUROC of feature, depth, both; FPS on things."""
    images = tune.get(profile.fidelity) or next(iter(tune.values()))
    auroc = same_class_auroc(images.feats, images.depth, images.raw_labels,
                             pairs_per_image=2000, exclude=(synthscenes.SKY,), seed=0)
    grid = (profile.res // backbone.patch_size,) * 2
    share = fps_thing_share(images.depth, images.raw_labels, synthscenes.THING_IDS, grid,
                            min(profile.samples, grid[0]))
    return {"auroc": {k: round(v, 4) if isinstance(v, float) else v for k, v in auroc.items()},
            "fps_thing_share": {k: round(v, 4) for k, v in share.items()},
            "depth": "ground truth, min-max normalised per image; sky pairs excluded"}


def write_nuisance_cache(clean: CachedSplit, folder: Path, split: str, settings: dict,
                         inputs, nuisance: Nuisance, sources: list[str],
                         batch: int = 256) -> None:
    """A cached split with the nuisance added, recorded so that `prepare_caches` opens it."""
    record = folder / "features.json"
    meta = load_json(record) if record.exists() else {}
    settings = json.loads(json.dumps(settings, default=str))  # as the JSON file holds them
    if meta.get("settings") != settings:
        meta = {"version": 1, "settings": settings, "splits": {}}
    if meta["splits"].get(split, {}).get("inputs") == inputs and all(
            (folder / f"{k}_{split}.npy").exists() for k in ("feats", "labels", "depth")):
        return
    n = len(clean)
    with atomic_path(folder / f"feats_{split}.npy") as tmp:
        feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=clean.feats.dtype,
                                          shape=clean.feats.shape)
        for start in range(0, n, batch):
            f = torch.from_numpy(np.asarray(clean.feats[start:start + batch], dtype=np.float32))
            feats[start:start + batch] = nuisance.add(f, sources[start:start + batch]).numpy()
        feats.flush()
        del feats
    for k in ("labels", "depth"):
        with atomic_path(folder / f"{k}_{split}.npy") as tmp:
            np.save(tmp, np.asarray(getattr(clean, k)))
    meta["splits"][split] = {"n": n, "grid": list(clean.feats.shape[-2:]),
                             "dim": int(clean.feats.shape[1]), "inputs": inputs,
                             "nuisance": nuisance.identity()}
    save_json(record, meta)


def mine_knn(feats: np.ndarray, store: int, batch: int = 256) -> np.ndarray:
    """kNN table of feature maps as the kNN stage mines it: mean-pooled, unit-norm, cosine."""
    pooled = torch.cat([pool_features(torch.from_numpy(np.asarray(feats[s:s + batch],
                                                                  dtype=np.float32)))
                        for s in range(0, len(feats), batch)])
    return topk_neighbours(pooled.numpy(), store - 1)


def nuisance_images(images: ImageSet, nuisance: Nuisance, split: str) -> ImageSet:
    """The images with the nuisance added (and to their mirrors; each image its own source)."""
    sources = image_sources(len(images.feats), split)
    return dataclasses.replace(images, feats=nuisance.add(images.feats, sources),
                               feats_flip=nuisance.add(images.feats_flip, sources))


def apply_nuisance(kd: KnobData, nuisance: Nuisance, profile: Profile, backbone, device,
                   progress: bool) -> KnobData:
    """The setting's data with the nuisance added to every feature read: the training crops'
    cache (its kNN table mined again), the validation crops, the tune and report images."""
    tag = json_digest(nuisance.identity(), 12)
    train_data, tune, report = {}, {}, {}
    for fidelity, (data, caches) in kd.train_data.items():
        folder = Path(f"{data.cache_dir}_nuisance{tag}")
        ndata = dataclasses.replace(data, cache_dir=folder, key=f"{data.key}|nuisance{tag}")
        variant = kd.profile.replace(fidelity=fidelity)
        settings = cache_settings(variant, ndata, backbone)
        for split, source, sources in (  # the validation crops are the tune split's images
                ("train", data.train, crop_sources(len(caches["train"]))),
                ("val", data.val, image_sources(len(caches["val"]), f"tune{profile.tune_seed}"))):
            write_nuisance_cache(caches[split], folder, split, settings, source_digest(source),
                                 nuisance, sources)
        knn_file = folder / "knn.npy"
        if not knn_file.exists():
            with atomic_path(knn_file) as tmp:
                np.save(tmp, mine_knn(np.load(folder / "feats_train.npy", mmap_mode="r"),
                                      data.knn.shape[1]))
        ndata = dataclasses.replace(ndata, knn=np.load(knn_file))
        train_data[fidelity] = (ndata, prepare_caches(variant, ndata, backbone, device, 0, 1,
                                                      progress))
        tune[fidelity] = nuisance_images(kd.tune[fidelity], nuisance, f"tune{profile.tune_seed}")
        report[fidelity] = nuisance_images(kd.report[fidelity], nuisance,
                                           f"report{profile.report_seed}")
    return KnobData(kd.profile, train_data, tune, report, measure_premise(tune, profile, backbone))


def nuisance_spec(strength: float) -> dict:
    """A nuisance setting without its measured scale (part of a row's identity)."""
    spec = Nuisance(float(strength), scale=1.0, dim=1024).identity()
    return {k: v for k, v in spec.items() if k not in ("scale", "dim")}
