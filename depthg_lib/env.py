"""Device choice and an environment report (chapter 00 shows it; benchmarks record it)."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

import torch

from .errors import DepthGError

_PACKAGES = ("torch", "torchvision", "timm", "transformers", "numpy", "scipy",
             "scikit-learn", "pillow", "matplotlib", "papermill", "pydensecrf2")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` → CUDA when present, else CPU; asking for CUDA without a GPU is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DepthGError("device 'cuda' was asked for but torch sees no GPU; use --device cpu "
                          "(or auto)")
    return device


def machine_name() -> str:
    """A short, stable name for this machine: the GPU model or `cpu<N>-<host>`."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-")
    return f"cpu{os.cpu_count()}-{socket.gethostname()}"


def environment_report() -> dict[str, str]:
    """Versions and hardware, as one flat dict of strings."""
    report = {"python": platform.python_version(), "platform": platform.platform(),
              "cpus": str(os.cpu_count()), "torch threads": str(torch.get_num_threads()),
              "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
    for name in _PACKAGES:
        try:
            report[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            report[name] = "not installed"
    return report
