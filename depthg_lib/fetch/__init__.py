"""`python -m depthg_lib.fetch --profile NAME`: download what a paper profile needs, where it
reads it (docs/reproduction.md §1 and §6).

    python -m depthg_lib.fetch --profile cityscapes-vitb8 --dry-run   # the plan and the disk
    python -m depthg_lib.fetch --profile cityscapes-vitb8             # fetch what is missing
    python -m depthg_lib.fetch --profile stego-cityscapes-vitb8 --only checkpoint

What comes from where:
- backbones — the DINO release files the released code loads (ViT-S/8 is the *300-epoch*
  `dino_deitsmall8_300ep_pretrain.pth`, not the file timm's `vit_small_patch8_224.dino` tag
  points at), saved as `<timm name>.pth` where `load_backbone` reads; DINOv2 through the
  Hugging Face hub cache, linked there as `<timm name>.safetensors`.
- depth models — through the hub cache (`Intel/zoedepth-nyu` as released, Depth-Anything V2).
- datasets — STEGO's preprocessed archives, extracted atomically into the profile's dataset
  folder, then checked as `python -m depthg_lib.data check` does.
- released checkpoints — STEGO's from its public storage; DepthG's are placed by hand.

HTTP downloads resume and their sha256 goes to `<data_root>/fetch-ledger.json`, checked on
later runs. Mirrors: `--dino-url` / `$DEPTHG_DINO_URL`, `--stego-url` / `$DEPTHG_STEGO_URL`; the
hub honours `$HF_ENDPOINT`, `$HF_HOME` and `$HF_HUB_OFFLINE`. Modules: `sources` (what each
profile needs, `plan`), `downloads` (HTTP, the ledger, zip extraction), `hub`, `run` (item
states, the dry-run table, `fetch`, `main`).
"""

from .run import fetch, main
from .sources import plan, released_checkpoint_path

__all__ = ["fetch", "main", "plan", "released_checkpoint_path"]
