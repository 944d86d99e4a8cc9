"""`python -m depthg_lib.fetch --profile NAME`: download what a paper profile needs, where it
reads it (docs/reproduction.md §1 and §6).

    python -m depthg_lib.fetch --profile cityscapes-vitb8 --dry-run   # the plan and the disk
    python -m depthg_lib.fetch --profile cityscapes-vitb8             # fetch what is missing
    python -m depthg_lib.fetch --profile stego-cityscapes-vitb8 --only checkpoint

What comes from where:
- backbones — the DINO release files the released code loads (ViT-S/8 is the *300-epoch*
  `dino_deitsmall8_300ep_pretrain.pth`, not the file timm's `vit_small_patch8_224.dino` tag
  points at; ViT-B/8 `dino_vitbase8_pretrain.pth`), saved as `<timm name>.pth` in the folder
  `load_backbone` reads; DINOv2 through the Hugging Face hub cache (timm's hub ids), linked
  there as `<timm name>.safetensors`.
- depth models — through the Hugging Face hub cache (`Intel/zoedepth-nyu` as released,
  Depth-Anything V2 Small), where the depth stage looks for them.
- datasets — STEGO's preprocessed archives (`cocostuff.zip`, `cityscapes.zip`, `potsdam.zip`;
  `potsdamraw.zip` on request), extracted atomically into the profile's dataset folder, then
  checked as `python -m depthg_lib.data check` does.
- released checkpoints — STEGO's from its public storage; DepthG's are on a shared drive and
  are placed by hand (the command says where).

HTTP downloads resume (a `.part` file and a Range request), show a progress bar, and their
sha256 is written to a ledger (`<data_root>/fetch-ledger.json`) and checked on later runs; a
file whose checksum differs from the recorded one is refused. Base URLs can be pointed at a
mirror: `--dino-url` / `$DEPTHG_DINO_URL`, `--stego-url` / `$DEPTHG_STEGO_URL`; the hub honours
`$HF_ENDPOINT`, `$HF_HOME` and `$HF_HUB_OFFLINE`.

The package, by concern: `sources` (what each profile needs and where from, `plan`),
`downloads` (HTTP with Range resume, the ledger, checksums), `extract` (atomic zip
extraction), `hub` (the Hugging Face cache), `run` (item states, the dry-run table, `fetch`)
and `cli` (`main`).
"""

from __future__ import annotations

from .cli import main
from .downloads import LEDGER, Ledger, download
from .extract import extract_zip
from .run import fetch
from .sources import (
    DATASETS,
    ENV_DINO,
    ENV_STEGO,
    STEGO_URL,
    format_size,
    plan,
    released_checkpoint_path,
)

__all__ = [
    "DATASETS", "ENV_DINO", "ENV_STEGO", "LEDGER", "STEGO_URL", "Ledger", "download",
    "extract_zip", "fetch", "format_size", "main", "plan", "released_checkpoint_path",
]
