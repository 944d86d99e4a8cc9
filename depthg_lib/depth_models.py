"""The depth backends of stage 01 (docs/method.md §2): `estimate_depth`, (B,3,H,W) images in
[0,1] → (B,H,W) depth, larger = farther; transformers models come from a local folder or the
Hugging Face cache, never the network."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch

from .config import REPO_ROOT
from .embedded import EmbeddedDepthModel
from .env import resolve_device
from .errors import DepthGError
from .io import sha256_file

DEFAULT_MODELS = {"zoedepth": "Intel/zoedepth-nyu",
                  "depth_anything": "depth-anything/Depth-Anything-V2-Small-hf",
                  "synth": "embedded", "gt": "synthscenes-gt"}


class TransformersDepthModel:
    """`zoedepth` (metric depth, padding removed through `source_sizes`) or `depth_anything`
    (relative disparity, negated: 1/disparity could be negative) via transformers."""

    def __init__(self, backend: str, model_dir: Path, model_id: str, device: torch.device):
        # heavy: transformers takes seconds to import, and only these two backends need it
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.backend, self.model_id, self.device = backend, model_id, device
        try:
            self.model = AutoModelForDepthEstimation.from_pretrained(
                model_dir, local_files_only=True).eval().to(device)
            self.processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise DepthGError(
                f"cannot load the {backend} model {model_id!r} from {model_dir} "
                f"({type(err).__name__}: {str(err).splitlines()[0]}); the folder must hold "
                f"config.json, preprocessor_config.json and the weights, as written by "
                f"`save_pretrained` or `hf download {model_id} --local-dir {model_dir}`") from None
        found = getattr(self.model.config, "model_type", "?")
        if found != backend:  # each backend is named after its transformers `model_type`
            raise DepthGError(  # (the model of a wrong folder could flip the depth order)
                f"{model_dir} holds a {found!r} model but depth backend {backend!r} expects "
                f"{backend!r}; set depth_backend or depth_model to match")
        self.weights_sha256 = _weights_digest(model_dir)
        size = getattr(self.processor, "size", None)
        self.resolution = dict(size) if size is not None else None

    def settings(self) -> dict:
        """What `depth.json` records, so that maps of another model are never mixed in."""
        return {"backend": self.backend, "model": self.model_id,
                "weights_sha256": self.weights_sha256, "resolution": self.resolution}

    @torch.no_grad()
    def estimate_depth(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) float in [0,1] → (B,H,W) float32 on the CPU, larger = farther."""
        b, _, h, w = images.shape
        # The processors were made for 0..255 pictures: hand them uint8, as from a file.
        pixels = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        inputs = self.processor(images=list(pixels), return_tensors="pt")
        outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device))
        sizes = [(h, w)] * b
        padded = {"source_sizes": sizes} if self.backend == "zoedepth" else {}
        post = self.processor.post_process_depth_estimation(outputs, target_sizes=sizes, **padded)
        depth = torch.stack([p["predicted_depth"].reshape(h, w) for p in post]).float().cpu()
        return -depth if self.backend == "depth_anything" else depth


def _weights_digest(model_dir: Path) -> str | None:
    """sha256 of a transformers folder's weight file, or one digest of their digests."""
    files = sorted(p for p in Path(model_dir).iterdir()
                   if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    if len(files) <= 1:
        return sha256_file(files[0]) if files else None
    listing = "".join(f"{p.name}:{sha256_file(p)}\n" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def resolve_model_dir(backend: str, model: str | None = None,
                      model_dir: str | os.PathLike | None = None) -> tuple[str, Path]:
    """(model id, local folder) of a transformers backend: `model` as a folder,
    `<model_dir>/<model id>` (default data/models/), or the Hugging Face cache."""
    model_id = model or DEFAULT_MODELS[backend]
    as_dir = Path(os.path.expanduser(model_id))
    local = Path(model_dir or REPO_ROOT / "data" / "models") / model_id
    for folder in (as_dir, local):
        if folder.is_dir():
            return model_id, folder
    with contextlib.suppress(Exception):  # not in the cache, or not a repo id: the same advice
        from huggingface_hub import snapshot_download  # heavy import, for these backends only

        return model_id, Path(snapshot_download(model_id, local_files_only=True))
    raise DepthGError(
        f"depth model {model_id!r} for backend {backend!r} is not on this machine (looked in "
        f"{as_dir if as_dir.is_absolute() else local} and the Hugging Face cache; it is never "
        f"downloaded at run time). On a machine with network run "
        f"`hf download {model_id} --local-dir {local}` and copy that folder to {local}, "
        f"or set depth_model in the profile to the folder that holds it")


def load_depth_model(backend: str, model: str | None = None, device: str | torch.device = "cpu",
                     model_dir: str | os.PathLike | None = None):
    """The model of `backend` (`zoedepth`, `depth_anything`, `synth`; `gt` has none): `model` a
    model id or folder (transformers), `random` (synth), None = the default."""
    device = resolve_device(device)
    if backend == "synth":
        if model not in (None, "", "embedded", "random"):
            raise DepthGError(f"depth backend 'synth' takes depth_model '' (shipped weights) or "
                              f"'random' (random init), found {model!r}")
        return EmbeddedDepthModel(pretrained=model != "random", device=device)
    model_id, folder = resolve_model_dir(backend, model, model_dir)
    return TransformersDepthModel(backend, folder, model_id, device)
