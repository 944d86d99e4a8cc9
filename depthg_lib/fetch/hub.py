"""Models that come through the Hugging Face hub cache: DINOv2 backbones and the depth models."""

from __future__ import annotations

import shutil
from pathlib import Path

from huggingface_hub import constants, snapshot_download

from ..errors import DepthGError
from .downloads import Ledger
from .sources import Item


def hub_snapshot(repo: str, allow: list[str] | None = None, download: bool = True) -> Path | None:
    """The local snapshot folder of a hub repo: from the cache, else downloaded (unless
    offline or `download` is False, then None)."""
    try:
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=allow))
    except Exception:  # not cached (the hub raises several types for that)
        pass
    if not download:
        return None
    if constants.HF_HUB_OFFLINE:
        raise DepthGError(f"{repo} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                          "and HF_HUB_OFFLINE is set; unset it on a machine with a network, or "
                          "copy the cache folder models--" + repo.replace("/", "--") + " there")
    try:
        return Path(snapshot_download(repo, allow_patterns=allow))
    except Exception as err:
        raise DepthGError(
            f"cannot download {repo} from the Hugging Face hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}); on a machine with a network run the same "
            f"command, then copy {constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')} "
            "to the same place here") from None


def _hub_weights(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))


def fetch_hub(item: Item, ledger: Ledger) -> str:
    """Make a hub item present: in the cache (downloaded if need be), a backbone linked where
    `load_backbone` reads it; recorded in the ledger."""
    allow = (["*.json", "model.safetensors"] if item.kind == "backbone"
             else ["*.json", "*.safetensors", "*.txt"])
    snap = hub_snapshot(item.hub_repo, allow)
    weights = _hub_weights(snap)
    if not weights and item.kind == "depth":  # a repo without safetensors
        snap = hub_snapshot(item.hub_repo, ["*.json", "*.bin", "*.txt"])
        weights = _hub_weights(snap)
    if not weights:
        raise DepthGError(f"{item.hub_repo} in the hub cache ({snap}) holds no weight file "
                          "(.safetensors or .bin); delete that folder and run again")
    source = f"hf://{item.hub_repo}@{snap.name}"
    if not ledger.get(source):
        ledger.record(source, revision=snap.name, path=str(snap),
                      files={p.name: p.resolve().name for p in weights})
    if item.kind == "backbone":
        return _link_backbone(item, weights[0])
    return f"in the hub cache: {snap}"


def _link_backbone(item: Item, weights: Path) -> str:
    dest = item.dest
    if dest.exists():
        return f"present ({dest})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.symlink_to(weights.resolve())
    except OSError:
        shutil.copyfile(weights, dest)
    return f"linked {dest} → hub cache"

