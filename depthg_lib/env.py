"""Device choice and an environment report (chapter 00 shows it; benchmarks record it)."""

from __future__ import annotations

import argparse
import os
import platform
import socket
from importlib import metadata

import torch

from .errors import DepthGError

_PACKAGES = ("torch", "torchvision", "timm", "transformers", "numpy", "scipy",
             "scikit-learn", "pillow", "matplotlib", "papermill", "pydensecrf2")
DEVICES = "auto, cpu, cuda or cuda:N (N = the GPU's number)"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` → CUDA when present, else CPU; anything but cpu or a GPU torch sees (a typo,
    `tpu`, a GPU number beyond those present) is one clear error listing the choices."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(str(device).strip().lower())
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise DepthGError(f"unknown device {str(device)!r}; use --device {DEVICES}")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if parsed.type == "cuda" and (parsed.index or 0) >= count:
        raise DepthGError(f"device {str(device)!r} was asked for but torch sees {count} GPU(s); "
                          f"use --device {DEVICES}")
    return parsed


def device_arg(value: str) -> str:
    """argparse `type` of every `--device`: a device this machine lacks stops it before work."""
    try:
        resolve_device(value)
    except DepthGError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


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
