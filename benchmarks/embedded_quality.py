"""Quality bars of the embedded ViT and depth network, beside their baselines (issue 7).

    python benchmarks/embedded_quality.py                    # the shipped weights
    python benchmarks/embedded_quality.py --update-manifest  # ... and record the figures
    python benchmarks/embedded_quality.py --vit-checkpoint /work/pretrain_runs/vit/checkpoint.pt

Evaluated on SynthScenes rendered with seed 2024 (never used in training; pretraining uses
seed 1000), 128 validation scenes of 128 px by default. Bars: ViT k-means mIoU ≥ 8 points
above both random weights and mean-RGB k-means; depth MAE ≤ ½ constant-map MAE and
Spearman ≥ 0.85. Writes `benchmarks/results/embedded_quality.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from depthg_lib import embedded  # noqa: E402
from depthg_lib.errors import run_cli  # noqa: E402
from depthg_lib.io import save_json, sha256_file  # noqa: E402
from depthg_lib.pretrain import quality  # noqa: E402
from depthg_lib.pretrain.common import (  # noqa: E402
    EVAL_DATA_SEED,
    PRETRAIN_DATA_SEED,
    ensure_synthscenes,
    load_split,
)

RESULT = REPO / "benchmarks" / "results" / "embedded_quality.json"


def _vit(checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    if checkpoint is None:
        return embedded.load_embedded_vit(), str(embedded.weights_path("vit").relative_to(REPO))
    from depthg_lib.pretrain.export import vit_backbone_state

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]
    vit = embedded.build_embedded_vit()
    vit.load_state_dict(vit_backbone_state(state))
    return vit.eval(), f"{checkpoint} (step {state['step']})"


def _depth(checkpoint: str | None) -> tuple[embedded.EmbeddedDepthModel, str]:
    if checkpoint is None:
        return (embedded.EmbeddedDepthModel(),
                str(embedded.weights_path("depth").relative_to(REPO)))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]
    model = embedded.EmbeddedDepthModel(pretrained=False)
    model.net.load_state_dict(state["net"])
    return model, f"{checkpoint} (step {state['step']})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["vit", "depth"], default=None)
    p.add_argument("--n-val", type=int, default=128)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=EVAL_DATA_SEED)
    p.add_argument("--data", default=str(REPO / "data" / "synthscenes_eval"))
    p.add_argument("--train-data", default=str(REPO / "data" / "synthscenes_pretrain"),
                   help="pretraining scenes (for the constant-map depth baseline)")
    p.add_argument("--vit-checkpoint", default=None, help="evaluate a run checkpoint instead")
    p.add_argument("--depth-checkpoint", default=None, help="evaluate a run checkpoint instead")
    p.add_argument("--update-manifest", action="store_true",
                   help="record the figures in depthg_lib/weights/manifest.json")
    p.add_argument("--out", default=str(RESULT))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--kmeans-seeds", type=int, default=5,
                   help="k-means initialisations to average over (seeds 0, 1, ...)")
    args = p.parse_args(argv)
    if args.seed == PRETRAIN_DATA_SEED:
        raise SystemExit(f"error: seed {args.seed} is the pretraining seed; evaluate on another")
    torch.set_num_threads(args.threads)
    from depthg_lib.data.synthscenes import N_CLASSES

    ensure_synthscenes(args.data, n_train=0, n_val=args.n_val, size=args.size, seed=args.seed)
    val = load_split(args.data, "val", depth=True, labels=True, limit=args.n_val)
    setting = {"data": f"SynthScenes seed {args.seed}, {len(val['images'])} val images of "
                       f"{args.size} px", "n_classes": N_CLASSES}
    results: dict = {"setting": setting}
    t0 = time.time()

    if args.only in (None, "vit"):
        vit, source = _vit(args.vit_checkpoint)
        res = quality.vit_quality(vit, val["images"], val["labels"], N_CLASSES,
                                  kmeans_seeds=args.kmeans_seeds)
        results["vit"] = {"weights": source, **res}
        print(f"ViT patch k-means ({N_CLASSES} clusters, Hungarian), {setting['data']}, "
              f"mean over k-means seeds {res['kmeans_seeds']}:")
        for name in ("trained", "random_init", "mean_rgb"):
            print(f"  {name:12s} mIoU {res[name]['miou']:6.2f}  acc {res[name]['acc']:6.2f}"
                  f"  (per seed {res[name]['miou_seeds']})")
        print(f"  margin over the best baseline: {res['margin_miou']:+.2f} mIoU points "
              f"(bar: >= +8) -> {'PASS' if res['passes'] else 'FAIL'}")

    if args.only in (None, "depth"):
        model, source = _depth(args.depth_checkpoint)
        train = load_split(args.train_data, "train", depth=True, limit=2000)
        mean_map = quality.mean_normalised_depth(train["depth"])
        x = torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float() / 255
        pred = torch.cat([model.estimate_depth(x[i:i + 32]) for i in range(0, len(x), 32)])
        res = quality.depth_quality(pred, val["depth"], mean_map)
        results["depth"] = {"weights": source, **res}
        print(f"Depth on min-max normalised depth, {setting['data']}:")
        print(f"  MAE {res['mae']:.4f}  vs constant mean map {res['constant_mae']:.4f} "
              f"(ratio {res['mae_ratio']:.3f}, bar <= 0.5)")
        print(f"  Spearman {res['spearman']:.3f} (bar >= 0.85) -> "
              f"{'PASS' if res['passes'] else 'FAIL'}")

    results["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    save_json(out, {**old, **results})
    print(f"wrote {out}")
    if args.update_manifest:
        from depthg_lib.pretrain.export import record_quality

        for kind in ("vit", "depth"):
            if kind in results and (args.vit_checkpoint if kind == "vit"
                                    else args.depth_checkpoint) is None:
                figures = {k: v for k, v in results[kind].items() if k != "weights"}
                record_quality(kind, {"setting": setting, **figures,
                                      "measured_by": "python benchmarks/embedded_quality.py"})
                print(f"recorded {kind} quality in the manifest "
                      f"({sha256_file(embedded.weights_path(kind))[:12]})")
    return 0


if __name__ == "__main__":
    run_cli(main)
