"""The GPU path, checked rather than assumed (run by benchmarks/gpu.sh).

    python benchmarks/gpu_checks.py --device cuda --json-out gpu_checks.json
    python benchmarks/gpu_checks.py --device cpu --small     # the dry run gpu.sh does here

1. fused attention — the course's ViT (timm) and the imported released DINO ViT run
   `scaled_dot_product_attention`; on CUDA under bf16 autocast a flash / memory-efficient /
   cuDNN attention kernel must appear in the profile (else the check fails).
2. the full training step — frozen backbone (bf16, channels-last, `features.featurize`) on a
   batch of crops and positives, then `train.Trainer.step` (head, DepthG loss with FPS
   sampling, probes, three Adam steps): milliseconds per step by CUDA events, and one step
   under `torch.cuda.set_sync_debug_mode("error")` must not synchronise with the host.
3. kNN mining on the device — `knn.topk_neighbours` on N random unit features there.
4. released-model codes at 320 px (bf16), images per second.

Prints one table and, with --json-out, writes the rows as JSON.
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

ATTENTION_KERNELS = ("flash", "fmha", "efficient_attention", "mem_efficient", "cudnn", "sdpa")


def _amp(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def attention_kernels(module, images: torch.Tensor) -> list[str]:
    """Names of the attention ops/kernels a forward pass runs (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if images.is_cuda else [])
    with torch.no_grad(), _amp(images.device), profile(activities=acts) as prof:
        module(images)
    names = {e.key for e in prof.key_averages()}
    if images.is_cuda:
        return sorted(n for n in names if any(k in n.lower() for k in ATTENTION_KERNELS)
                      and not n.startswith("aten::"))
    return sorted(n for n in names if "scaled_dot_product" in n)


def check_fused_attention(device, small: bool) -> list[dict]:
    from depthg_lib.models import load_backbone
    from depthg_lib.released import DinoViT

    rows = []
    name = "vit_small_patch8_224.dino"
    backbone = load_backbone(name, weights="random", device=device)
    flags = [getattr(b.attn, "fused_attn", None) for b in backbone.vit.blocks]
    images = torch.rand(2, 3, 64 if small else 224, 64 if small else 224, device=device)
    kernels = attention_kernels(backbone, images)
    ok = all(flags) and bool(kernels)
    rows.append({"check": "fused attention (course ViT-S/8, timm)", "ok": ok,
                 "detail": f"fused_attn={all(flags)}; kernels: {', '.join(kernels)[:120]}"})
    dino = DinoViT(384, 2 if small else 12, 6, 8, 785, 1536, "released ViT-S/8").to(device)
    kernels = attention_kernels(dino, images)
    rows.append({"check": "fused attention (released DINO ViT-S/8)", "ok": bool(kernels),
                 "detail": "kernels: " + ", ".join(kernels)[:120]})
    return rows


def check_train_step(device, small: bool, reps: int) -> list[dict]:
    """The full step as `train` runs it, timed; one step must not sync with the host."""
    from depthg_lib.config import load_profile
    from depthg_lib.features import featurize
    from depthg_lib.models import load_backbone
    from depthg_lib.train import Trainer

    batch, size = (2, 64) if small else (32, 224)
    profile = load_profile("cocostuff27-vits8").replace(batch_size=batch, res=size,
                                                        samples=5 if small else 11,
                                                        fps_min_samples=5 if small else 5)
    backbone = load_backbone(profile.backbone, weights="random", device=device)
    if device.type == "cuda":
        backbone = backbone.to(memory_format=torch.channels_last)
    trainer = Trainer(profile, backbone.dim, device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)
    images_pos = torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)
    images, images_pos = images.to(device), images_pos.to(device)
    label = torch.randint(0, 27, (batch, size, size), generator=gen).to(device)
    depth = torch.rand(batch, 1, size, size, generator=gen).to(device)
    depth_pos = torch.rand(batch, 1, size, size, generator=gen).to(device)

    def step(i):
        feats, feats_pos = featurize(backbone, images), featurize(backbone, images_pos)
        return trainer.step(i, feats, feats_pos, label, depth, depth_pos)

    for i in range(2):  # warm-up (kernel selection, allocator)
        step(i)
    rows = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step(2)
            synced, detail = False, "no host synchronisation in one full step"
        except RuntimeError as err:
            synced, detail = True, str(err).splitlines()[0][:160]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        rows.append({"check": "full step without host syncs", "ok": not synced,
                     "detail": detail})
        torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for i in range(reps):
            step(3 + i)
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / reps
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        t0 = time.perf_counter()
        for i in range(reps):
            step(3 + i)
        ms, peak = (time.perf_counter() - t0) * 1000 / reps, float("nan")
    goal = "" if small else (" (goal ≤ 25 ms: " + ("met" if ms <= 25 else "NOT met") + ")")
    precision = "bf16" if device.type == "cuda" else "fp32"
    rows.append({"check": f"full step ViT-S/8, batch {batch}, {size} px, FPS, {precision}",
                 "ok": True, "ms": round(ms, 2), "peak_mb": round(peak, 1),
                 "detail": f"{ms:.1f} ms/step{goal}"})
    return rows


def check_knn(device, small: bool) -> list[dict]:
    from depthg_lib.knn import topk_neighbours

    n, dim = (2000, 64) if small else (100_000, 384)
    feats = torch.nn.functional.normalize(torch.randn(n, dim, device=device), dim=1)
    topk_neighbours(feats[:512], 7, block=256)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    nns = topk_neighbours(feats, 30, block=4096)
    if device.type == "cuda":
        torch.cuda.synchronize()
    s = time.perf_counter() - t0
    self_first = bool((torch.as_tensor(nns)[:, 0].cpu() == torch.arange(n)).float().mean() > 0.99)
    return [{"check": f"kNN on {device.type}: N={n}, D={dim}, k=30", "ok": self_first,
             "seconds": round(s, 2), "detail": f"{s:.2f} s; each crop its own nearest: "
             f"{self_first}"}]


def check_released_codes(device, small: bool, reps: int) -> list[dict]:
    from depthg_lib.released import DinoViT

    batch, size = (1, 64) if small else (32, 320)
    dino = DinoViT(384, 2 if small else 12, 6, 8, 785, 1536, "released ViT-S/8").to(device)
    images = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad(), _amp(device):
        dino(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            dino(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
    per_s = batch * reps / (time.perf_counter() - t0)
    return [{"check": f"released ViT-S/8 features at {size} px, batch {batch}", "ok": True,
             "images_per_s": round(per_s, 1), "detail": f"{per_s:.1f} images/s"}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes (the CPU dry run)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda asked for, but torch sees no CUDA device")
    device = torch.device(args.device)
    rows = []
    checks = [("fused attention", lambda: check_fused_attention(device, args.small)),
              ("full training step", lambda: check_train_step(device, args.small, args.reps)),
              ("kNN on the device", lambda: check_knn(device, args.small)),
              ("released codes", lambda: check_released_codes(device, args.small,
                                                              max(1, args.reps // 4)))]
    for name, fn in checks:
        try:
            rows += fn()
        except Exception as err:  # one failing check must not hide the others' numbers
            rows.append({"check": name, "ok": False,
                         "detail": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"})
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"| check ({label}, torch {torch.__version__}) | ok | result |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['check']} | {'yes' if r['ok'] else 'NO'} | {r['detail']} |")
    bad = [r["check"] for r in rows if not r["ok"]]
    print(f"FAILED: {'; '.join(bad)}" if bad else f"all {len(rows)} checks passed")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"device": label, "torch": torch.__version__,
                                                   "rows": rows}, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
