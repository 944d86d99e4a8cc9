"""Stage 03 — nearest neighbours of every crop by cosine similarity of mean-pooled patch tokens
(docs/method.md §4); queries go in blocks: the N×N matrix (250 GB for N = 250k) is never formed."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import io
from .config import Profile, load_profile, profile_arg
from .crop import CropReader, require_current_crops
from .env import device_arg, resolve_device
from .errors import DepthGError, run_cli
from .models import load_backbone, profile_weights_identity
from .transforms import resize_center_crop


def pool_features(feature_maps: torch.Tensor) -> torch.Tensor:
    """(B,D,h,w) patch-token map → (B,D) unit-norm global feature (mean over h,w, then L2)."""
    return F.normalize(feature_maps.float().mean(dim=(2, 3)), dim=1)


@torch.no_grad()
def global_features(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [0,1] → (B,D), without the released feature dropout (golden README note 6)."""
    return pool_features(backbone(images))


def resize_for_knn(image: np.ndarray, res: int, fidelity: str = "released") -> torch.Tensor:
    """uint8 (H,W,3) → (3,res,res) in [0,1]; nearest as released (golden README note 7)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    return resize_center_crop(x, res, "nearest" if fidelity == "released" else "bilinear")


def _similarity_block(queries, feats):
    """Cosine scores of one block of queries against all items: (block, N), never (N, N)."""
    return queries @ feats.T


def _block_topk_numpy(sims: np.ndarray, kk: int) -> np.ndarray:
    """Top-`kk` columns of each row of `sims`, best first, ties → lower column."""
    n = sims.shape[1]
    threshold = np.partition(sims, n - kk, axis=1)[:, n - kk]  # kk-th largest per row
    flat = np.flatnonzero(sims >= threshold[:, None])  # row-major: cols ascend in a row
    rows, cols = np.divmod(flat, n)  # (2-D np.nonzero is 5× slower on these sparse masks)
    order = np.lexsort((cols, -sims[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    return cols[_rank_in_row(rows) < kk].reshape(len(sims), kk)


def _block_topk_torch(sims: torch.Tensor, kk: int) -> torch.Tensor:
    """The same on a tensor's own device."""
    threshold = sims.topk(kk, dim=1).values[:, -1:]
    rows, cols = (sims >= threshold).nonzero(as_tuple=True)
    order = (-sims[rows, cols]).argsort(stable=True)  # best first, ascending column among equals
    order = order[rows[order].argsort(stable=True)]  # then grouped by row
    rows, cols = rows[order], cols[order]
    keep = torch.from_numpy(_rank_in_row(rows.cpu().numpy()) < kk).to(cols.device)
    return cols[keep].reshape(len(sims), kk)


def _rank_in_row(rows: np.ndarray) -> np.ndarray:
    """Position of each entry within its run of equal (sorted) row ids."""
    first = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    return np.arange(len(rows)) - np.repeat(first, np.diff(np.r_[first, len(rows)]))


def topk_neighbours(feats: np.ndarray | torch.Tensor, k: int, block: int = 4096,
                    progress: bool = False) -> np.ndarray:
    """int64 (N, k+1): row i = [i, its k most cosine-similar other items, best first, ties to the
    lower index]; `feats` unit-norm rows, numpy or torch (on its own device)."""
    n = len(feats)
    if n == 0:
        return np.zeros((0, k + 1), dtype=np.int64)
    kk = min(k, n - 1)
    out = np.empty((n, kk + 1), dtype=np.int64)
    out[:, 0] = np.arange(n)
    if kk == 0:
        return out
    for start in tqdm(range(0, n, block), desc="kNN", unit="block", disable=not progress):
        stop = min(start + block, n)
        sims = _similarity_block(feats[start:stop], feats)
        rows = np.arange(stop - start)
        sims[rows, rows + start] = -np.inf  # never an item's own neighbour
        out[start:stop, 1:] = (_block_topk_torch(sims, kk).cpu().numpy()
                               if isinstance(sims, torch.Tensor) else _block_topk_numpy(sims, kk))
    return out


def majority_classes(labels, ignore: int = 255) -> np.ndarray:
    """Most frequent class of each label map (ties → lower id); −1 where all pixels ignore."""
    result = []
    for lab in labels:
        vals = np.asarray(lab).ravel()
        vals = vals[vals != ignore].astype(np.int64)
        result.append(int(np.bincount(vals).argmax()) if vals.size else -1)
    return np.array(result, dtype=np.int64)


def neighbour_agreement(nns: np.ndarray, majority: np.ndarray, k: int | None = None,
                        groups: np.ndarray | None = None) -> float:
    """Share of (crop, neighbour) pairs in columns 1..k whose majority classes agree; `groups`
    (each crop's source image) leaves out pairs of one image, which agree for free."""
    k = nns.shape[1] - 1 if k is None else min(k, nns.shape[1] - 1)
    q, nb = majority[nns[:, :1]], majority[nns[:, 1:k + 1]]
    valid = (q >= 0) & (nb >= 0)
    if groups is not None:
        valid &= groups[nns[:, :1]] != groups[nns[:, 1:k + 1]]
    return float((q == nb)[valid].mean()) if valid.any() else float("nan")


def same_source_share(nns: np.ndarray, groups: np.ndarray, k: int | None = None) -> float:
    """Share of neighbours (columns 1..k) that are crops of the query's own image."""
    k = nns.shape[1] - 1 if k is None else min(k, nns.shape[1] - 1)
    return float((groups[nns[:, :1]] == groups[nns[:, 1:k + 1]]).mean())


def chance_agreement(majority: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The same share for a random pair of distinct crops: Σ_c n_c(n_c − 1) / (m(m − 1)); with
    `groups`, pairs from different images: (Σ_c n_c² − Σ_{c,g} n_cg²) / (m² − Σ_g m_g²)."""
    ok = majority >= 0
    valid = majority[ok]
    m = len(valid)
    if m < 2:
        return float("nan")
    counts = np.bincount(valid).astype(np.float64)
    if groups is None:
        return float((counts * (counts - 1)).sum() / (m * (m - 1)))
    _, g = np.unique(groups[ok], return_inverse=True)
    joint = np.zeros((g.max() + 1, len(counts)))
    np.add.at(joint, (g, valid), 1.0)
    pairs = m * m - (joint.sum(axis=1) ** 2).sum()
    same = (counts ** 2).sum() - (joint ** 2).sum()
    return float(same / pairs) if pairs > 0 else float("nan")


def knn_record_path(profile: Profile, split: str = "train") -> Path:
    """`<knn file>.knn.json`, one per file: `nns/` is shared by every profile and split."""
    return profile.paths.knn_file(split).with_suffix(".knn.json")


def stage_settings(profile: Profile, n: int, split: str) -> dict:
    weights = profile.backbone_weights
    sha = (io.sha256_file(weights) if weights and Path(weights).is_file()
           else profile_weights_identity(profile))
    return {"backbone": profile.backbone, "backbone_weights": weights or None,
            "weights_sha256": sha, "resolution": profile.knn_res,
            "resize": "nearest" if profile.fidelity == "released" else "bilinear",
            "features": "mean-pooled last-layer patch tokens, unit norm, no dropout",
            "K": min(profile.knn_store, n), "N": n, "split": split}


def featurise_crops(reader, backbone, res: int, fidelity: str, device: torch.device,
                    batch: int = 32, workers: int = 2, progress: bool = True) -> torch.Tensor:
    """(N, D) unit-norm global features of every crop, on `device`."""
    n = len(reader)

    def load(i):
        return resize_for_knn(io.read_rgb(reader.paths(i)["img"]), res, fidelity)

    feats = []
    with tqdm(total=n, desc="features", unit="crop", disable=not progress) as bar:
        for images in io.prefetched(load, range(n), batch, workers):
            feats.append(global_features(backbone, torch.stack(images).to(device)))
            bar.update(len(images))
    return torch.cat(feats)


def run_knn_stage(profile: Profile | str, split: str = "train", force: bool = False,
                  device: str = "auto", progress: bool = True) -> Path:
    """Mine and save `nns` (N, min(knn_store, N)) int64 for the crops of `split` (refused for other
    settings or crops than recorded unless `force`); the record is written after the file."""
    profile = load_profile(profile)
    reader = CropReader.from_profile(profile, split)
    if len(reader) == 0:
        raise DepthGError(f"no {split} crops in {profile.paths.crop_dir}; create them with "
                          f"`python -m depthg_lib.crop --profile {profile_arg(profile)} --split "
                          f"{split}`")
    require_current_crops(profile, split, "kNN")
    out, record = profile.paths.knn_file(split), knn_record_path(profile, split)
    settings = stage_settings(profile, len(reader), split)
    stage = record.stem
    command = f"python -m depthg_lib.knn --profile {profile_arg(profile)} --split {split}"
    inputs = {f"{split}/crops": reader.digest()}
    with io.stage_lock(record.parent, stage):
        if io.check_stage_settings(record.parent, stage, settings, force, inputs=inputs,
                                   command=command, write=False) and out.exists():
            return out
        dev = resolve_device(device)
        backbone = load_backbone(profile.backbone, profile.backbone_weights or None, device=dev)
        patch = getattr(backbone, "patch_size", 1)
        if profile.knn_res % patch:
            raise DepthGError(f"knn_res {profile.knn_res} (profile {profile.name}) must be a "
                              f"multiple of the backbone's patch size {patch}")
        feats = featurise_crops(reader, backbone, profile.knn_res, profile.fidelity, dev,
                                batch=profile.batch_size, workers=min(profile.num_workers, 8),
                                progress=progress)
        if feats.device.type == "cpu":
            feats = feats.numpy()  # numpy's partition beats torch's topk on the CPU
        nns = topk_neighbours(feats, settings["K"] - 1, block=profile.knn_block, progress=progress)
        io.save_npz(out, nns=nns)
        io.write_stage_record(record.parent, stage, settings, inputs)
    return out


def require_current_knn(profile: Profile | str, crops, split: str = "train") -> None:
    """Refuse a kNN file mined from other crops than `crops` (a `CropReader`) holds now."""
    profile = load_profile(profile)
    record = knn_record_path(profile, split)
    recorded = io.recorded_inputs(record.parent, record.stem)
    key = f"{split}/crops"
    if key in recorded and io.changed_inputs(recorded, {key: crops.digest()}):
        raise DepthGError(
            f"the neighbours in {profile.paths.knn_file(split)} were mined from other crops than "
            f"{crops.crop_dir} now holds; re-mine them with `python -m depthg_lib.knn --profile "
            f"{profile_arg(profile)} --split {split} --force`")


def load_knn(path: str | Path, profile: str = "<your profile>") -> np.ndarray:
    """The `nns` array of a kNN file; missing or unreadable, an error naming the command."""
    command = f"python -m depthg_lib.knn --profile {profile}"
    if not Path(path).exists():
        raise DepthGError(f"kNN file {path} does not exist; mine the neighbours first: {command}")
    try:
        with np.load(path) as data:
            return data["nns"].astype(np.int64)
    except (KeyError, ValueError, OSError) as err:
        raise DepthGError(f"cannot read key 'nns' from {path} ({err}); re-create it: {command} "
                          "--force") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.knn",
        description="Stage 03: the nearest crops of every crop (docs/method.md §4).")
    parser.add_argument("--profile", required=True, help="profile name or YAML path")
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--force", action="store_true", help="mine again")
    parser.add_argument("--device", default="auto", type=device_arg,
                        help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide the progress bars")
    out = run_knn_stage(**vars(parser.parse_args(argv)))
    print(f"neighbours in {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
