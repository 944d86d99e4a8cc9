"""Quality of the embedded ViT's frozen patch features and of the embedded depth net.

    python benchmarks/embedded_quality.py --only vit                  # selection seed 424242
    python benchmarks/embedded_quality.py --only vit --seed 8080      # the report seed
    python benchmarks/embedded_quality.py --only vit --candidate RUN/checkpoint.pt --json out.json
    python benchmarks/embedded_quality.py --update-manifest           # record the shipped figures

ViT: SynthScenes rendered with `--seed` (256 train + 64 val scenes of 128 px by
default; never a seed used in pretraining), patch labels by majority of each 8×8 patch,
L2-normalised last-layer patch tokens. Linear probe: logistic regression fitted on the train
scenes' patches, per-class IoU on the val scenes' patches. k-means: as many clusters as
classes on the val patches, Hungarian-matched. Rows: the shipped weights, the same ViT with
random weights, each patch's mean RGB and any `--candidate` checkpoints. Bar: linear ≥ 70
mIoU, every class ≥ 35 IoU under the probe, k-means ≥ 35. Seeds: 424242 is the selection
seed (looked at while choosing a recipe), 8080 the report seed (looked at once, for the final
check).

Depth: on the val scenes, MAE of min–max normalised depth against the best constant
map (≤ ½) and per-image Spearman ρ (≥ 0.85). Results go to `--out` (merged) and `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from depthg_lib import embedded  # noqa: E402
from depthg_lib.data.synthscenes import CLASS_NAMES, N_CLASSES, generate  # noqa: E402
from depthg_lib.errors import DepthGError, run_cli  # noqa: E402
from depthg_lib.io import load_json, read_label, save_json, sha256_file  # noqa: E402
from depthg_lib.metrics import confusion_histogram, scores  # noqa: E402
from depthg_lib.pretrain import quality  # noqa: E402
from depthg_lib.pretrain.common import (  # noqa: E402
    PRETRAIN_DATA_SEED,
    load_split,
    minmax_normalise,
)
from depthg_lib.pretrain.export import vit_backbone_state  # noqa: E402

RESULT = REPO / "benchmarks" / "results" / "embedded_quality.json"
SELECTION_SEED = 424242  # looked at while choosing recipes and checkpoints
REPORT_SEED = 8080  # looked at once, for the final check
THINGS = ("box", "sphere", "cylinder", "cone", "person")


def linear_probe(train_feats: torch.Tensor, train_labels: np.ndarray, val_feats: torch.Tensor,
                 val_labels: np.ndarray, n_classes: int, normalise: bool = True,
                 c: float = 1.0, max_iter: int = 300, max_train: int | None = 120_000) -> dict:
    """Logistic regression on (N,h,w,D) train patch features → class of every val patch;
    per-class IoU, mIoU and accuracy in %. Features are L2-normalised when `normalise` (not the
    mean RGB, whose length is its brightness), then standardised so `c` means the same for
    every feature set; ignored patches are left out of fit and score."""
    x_tr, y_tr = quality.patch_rows(train_feats, normalise).numpy(), train_labels.reshape(-1)
    keep = y_tr != quality.IGNORE
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    if max_train is not None and len(y_tr) > max_train:  # deterministic subsample
        idx = np.random.default_rng(0).choice(len(y_tr), max_train, replace=False)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((x_tr - mu) / sd, y_tr)
    x_va = (quality.patch_rows(val_feats, normalise).numpy() - mu) / sd
    pred = clf.classes_[clf.predict_proba(x_va).argmax(1)]
    hist = confusion_histogram(pred, val_labels.reshape(-1), n_classes)
    return quality.percent_scores(scores(hist, hungarian=False))


def feature_quality(train_feats: torch.Tensor, train_plabels: np.ndarray,
                    val_feats: torch.Tensor, val_plabels: np.ndarray, n_classes: int,
                    normalise: bool = True, kmeans_seeds: int = 1) -> dict:
    """One set of frozen patch features: linear probe (fit on train, scored on val) and k-means
    on val (mean over `kmeans_seeds` initialisations)."""
    lin = linear_probe(train_feats, train_plabels, val_feats, val_plabels, n_classes,
                       normalise=normalise)
    runs = [quality.kmeans_segment(val_feats, val_plabels, n_classes, k, normalise=normalise)[1]
            for k in range(kmeans_seeds)]
    km = {"miou": float(np.mean([r["miou"] for r in runs])),
          "acc": float(np.mean([r["acc"] for r in runs])), "iou": runs[0]["iou"],
          "miou_seeds": [round(r["miou"], 2) for r in runs]}
    return {"linear": lin, "kmeans": km}


def meets_backbone_bar(row: dict, linear_min: float = 70.0, class_min: float = 35.0,
                       kmeans_min: float = 35.0) -> bool:
    """A backbone the chapters read well with: linear-probe mIoU ≥ 70, every class present ≥ 35
    IoU under the probe, k-means mIoU ≥ 35."""
    ious = [v for v in row["linear"]["iou"] if v is not None]
    return bool(row["linear"]["miou"] >= linear_min and min(ious) >= class_min
                and row["kmeans"]["miou"] >= kmeans_min)


def depth_quality(pred: torch.Tensor, gt: np.ndarray, mean_map: np.ndarray) -> dict:
    """Min–max normalised MAE vs the constant mean map, and mean per-image Spearman rho."""
    p = minmax_normalise(pred.double()).numpy()
    g = minmax_normalise(torch.from_numpy(gt).double()).numpy()
    mae = float(np.abs(p - g).mean())
    const = float(np.abs(mean_map[None] - g).mean())
    rho = float(np.nanmean([spearmanr(pi.ravel(), gi.ravel())[0] for pi, gi in zip(p, g)]))
    return {"mae": mae, "constant_mae": const, "mae_ratio": mae / const, "spearman": rho,
            "passes": bool(mae <= 0.5 * const and rho >= 0.85)}


def mean_normalised_depth(depth: np.ndarray) -> np.ndarray:
    """The training set's mean min–max normalised depth map (the best-constant baseline)."""
    return minmax_normalise(torch.from_numpy(depth).double()).mean(0).numpy()


def load_labelled(data_dir: str, split: str, limit: int, depth: bool = False) -> dict:
    """`load_split` plus the label maps (N,H,W) uint8 of the same scenes."""
    out = load_split(data_dir, split, depth=depth, limit=limit)
    out["labels"] = np.stack([read_label(Path(data_dir) / "labels" / split / f"{name}.png")
                              for name in out["names"]])
    return out


def load_checkpoint_vit(path: str | Path) -> tuple[torch.nn.Module, int]:
    """The embedded ViT (eval mode) with the backbone of a pretraining checkpoint, and its step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["trainer"]
    except (OSError, KeyError, RuntimeError) as err:
        raise DepthGError(f"{path} is not a pretraining checkpoint ({err}); pass the "
                          "checkpoint.pt of a `python -m depthg_lib.pretrain vit` run") from None
    vit = embedded.build_embedded_vit()
    vit.load_state_dict(vit_backbone_state(state), strict=True)
    return vit.eval(), state["step"]


def record_quality(kind: str, figures: dict) -> None:
    """Store benchmark figures in the manifest entry of the weights they were measured on."""
    manifest_path = embedded.WEIGHTS_DIR / embedded.MANIFEST_NAME
    manifest = load_json(manifest_path)
    entry = manifest[kind]
    if sha256_file(embedded.WEIGHTS_DIR / entry["file"]) != entry["sha256"]:
        raise DepthGError(f"{embedded.WEIGHTS_DIR / entry['file']} does not match "
                          f"{manifest_path}; re-export before recording quality figures")
    entry["quality"] = {**figures, "weights_sha256": entry["sha256"]}
    save_json(manifest_path, manifest)


def _vit(checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    if checkpoint is None:
        return embedded.load_embedded_vit(), str(embedded.weights_path("vit").relative_to(REPO))
    vit, step = load_checkpoint_vit(checkpoint)
    return vit, f"{checkpoint} (step {step})"


def vit_table(train: dict, val: dict, rows: dict[str, str | None], n_classes: int,
              class_names: tuple[str, ...], kmeans_seeds: int) -> dict:
    """The ViT table: one `feature_quality` row per feature set (+ the random / RGB ones)."""
    tr_lab, va_lab = quality.patch_labels(train["labels"]), quality.patch_labels(val["labels"])
    out: dict = {}

    def add(name: str, source: str, tr, va, normalise: bool = True) -> None:
        t0 = time.time()
        row = feature_quality(tr, tr_lab, va, va_lab, n_classes, normalise=normalise,
                                      kmeans_seeds=kmeans_seeds)
        row["weights"] = source
        row["passes"] = meets_backbone_bar(row)
        row["seconds"] = round(time.time() - t0, 1)
        out[name] = row
        lin = row["linear"]
        things = " / ".join(f"{lin['iou'][class_names.index(c)]:.1f}" for c in THINGS)
        print(f"| {name} | {lin['miou']:.1f} | {row['kmeans']['miou']:.1f} | "
              f"{min(v for v in lin['iou'] if v is not None):.1f} | {things} |", flush=True)

    print("| frozen patch features | linear mIoU | k-means mIoU | worst class (linear) | "
          f"{' / '.join(THINGS)} (linear) |\n|---|---:|---:|---:|---|", flush=True)
    for name, ckpt in rows.items():
        vit, source = _vit(ckpt)
        add(name, source, quality.vit_patch_features(vit, train["images"]),
            quality.vit_patch_features(vit, val["images"]))
        if name == "shipped":
            torch.manual_seed(0)
            rnd = embedded.build_embedded_vit().eval()
            add("random weights", "same ViT, torch.manual_seed(0)",
                quality.vit_patch_features(rnd, train["images"]),
                quality.vit_patch_features(rnd, val["images"]))
            add("mean RGB", "mean RGB of each patch", quality.patch_mean_rgb(train["images"]),
                quality.patch_mean_rgb(val["images"]), normalise=False)
    return out


def _depth(checkpoint: str | None) -> tuple[embedded.EmbeddedDepthModel, str]:
    if checkpoint is None:
        return (embedded.EmbeddedDepthModel(),
                str(embedded.weights_path("depth").relative_to(REPO)))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]
    model = embedded.EmbeddedDepthModel(pretrained=False)
    model.net.load_state_dict(state["net"])
    return model, f"{checkpoint} (step {state['step']})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["vit", "depth"], default=None)
    p.add_argument("--n-train", type=int, default=256, help="scenes the linear probe is fit on")
    p.add_argument("--n-val", type=int, default=64, help="scenes every score is measured on")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=SELECTION_SEED,
                   help=f"SynthScenes seed: {SELECTION_SEED} selection, {REPORT_SEED} report")
    p.add_argument("--data", default=None,
                   help="scene folder (default data/synthscenes_eval_<seed>)")
    p.add_argument("--train-data", default=str(REPO / "data" / "synthscenes_pretrain"),
                   help="pretraining scenes (for the constant-map depth baseline)")
    p.add_argument("--candidate", action="append", default=[], metavar="[NAME=]CHECKPOINT",
                   help="a pretraining checkpoint to add as a row (repeatable)")
    p.add_argument("--no-shipped", action="store_true",
                   help="skip the shipped / random / RGB rows")
    p.add_argument("--json", default=None, help="also write this run's results here")
    p.add_argument("--depth-checkpoint", default=None, help="evaluate a run checkpoint instead")
    p.add_argument("--update-manifest", action="store_true",
                   help="record the figures in depthg_lib/weights/manifest.json")
    p.add_argument("--out", default=str(RESULT))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kmeans-seeds", type=int, default=3,
                   help="k-means initialisations to average over (seeds 0, 1, ...)")
    return p


def _vit_results(args: argparse.Namespace, data: str, val: dict, setting: dict) -> dict:
    train = load_labelled(data, "train", args.n_train)
    rows: dict[str, str | None] = {} if args.no_shipped else {"shipped": None}
    for i, cand in enumerate(args.candidate):
        name, _, path = cand.rpartition("=")
        rows[name or (f"candidate {i + 1}" if len(args.candidate) > 1 else "candidate")] = path
    print(f"{setting['data']}; bar: linear >= 70, every class >= 35, k-means >= 35")
    table = vit_table(train, val, rows, N_CLASSES, CLASS_NAMES, args.kmeans_seeds)
    return {"rows": table, **({"weights": table["shipped"]["weights"]}
                              if "shipped" in table else {})}


def _depth_results(args: argparse.Namespace, val: dict, setting: dict) -> dict:
    model, source = _depth(args.depth_checkpoint)
    ref = load_split(args.train_data, "train", depth=True, limit=2000)
    mean_map = mean_normalised_depth(ref["depth"])
    x = torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float() / 255
    pred = torch.cat([model.estimate_depth(x[i:i + 32]) for i in range(0, len(x), 32)])
    res = depth_quality(pred, val["depth"], mean_map)
    print(f"Depth on min-max normalised depth, {setting['data']}:")
    print(f"  MAE {res['mae']:.4f}  vs constant mean map {res['constant_mae']:.4f} "
          f"(ratio {res['mae_ratio']:.3f}, bar <= 0.5)")
    print(f"  Spearman {res['spearman']:.3f} (bar >= 0.85) -> "
          f"{'PASS' if res['passes'] else 'FAIL'}")
    return {"weights": source, **res}


def _record(args: argparse.Namespace, results: dict, setting: dict) -> None:
    """Write the results file (merged), the --json copy, and with --update-manifest the
    figures of the shipped weights into the manifest."""
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    save_json(out, {**old, **results})
    print(f"wrote {out}")
    if args.json:
        save_json(Path(args.json), results)
        print(f"wrote {args.json}")
    if not args.update_manifest:
        return
    shipped = {"vit": "shipped" in results.get("vit", {}).get("rows", {}),
               "depth": "depth" in results and args.depth_checkpoint is None}
    for kind in (k for k, ok in shipped.items() if ok):
        figures = {k: v for k, v in results[kind].items() if k != "weights"}
        record_quality(kind, {"setting": setting, **figures,
                              "measured_by": "python benchmarks/embedded_quality.py"})
        print(f"recorded {kind} quality in the manifest "
              f"({sha256_file(embedded.weights_path(kind))[:12]})")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seed == PRETRAIN_DATA_SEED:
        raise SystemExit(f"error: seed {args.seed} is the pretraining data seed; evaluate on "
                         f"another (selection {SELECTION_SEED}, report {REPORT_SEED})")
    torch.set_num_threads(args.threads)
    data = args.data or str(REPO / "data" / f"synthscenes_eval_{args.seed}")
    generate(data, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=args.seed)
    val = load_labelled(data, "val", args.n_val, depth=True)
    role = {SELECTION_SEED: "selection seed", REPORT_SEED: "report seed"}.get(args.seed, "seed")
    setting = {"data": f"SynthScenes {role} {args.seed}, {args.n_train} train / "
                       f"{len(val['images'])} val scenes of {args.size} px",
               "n_classes": N_CLASSES, "classes": list(CLASS_NAMES),
               "protocol": "patch labels by majority of 8x8 pixels; L2-normalised patch "
                           "tokens; linear probe = logistic regression fit on train patches; "
                           "k-means with n_classes clusters + Hungarian on val patches, mean "
                           f"over {args.kmeans_seeds} k-means seeds"}
    results: dict = {"setting": setting}
    t0 = time.time()
    if args.only in (None, "vit"):
        results["vit"] = _vit_results(args, data, val, setting)
    if args.only in (None, "depth"):
        results["depth"] = _depth_results(args, val, setting)
    results["seconds"] = round(time.time() - t0, 1)
    _record(args, results, setting)
    return 0


if __name__ == "__main__":
    run_cli(main)
