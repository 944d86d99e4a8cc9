"""Every `--device` is checked before any work: a device this machine cannot use is one clear
error that lists the choices, never torch's traceback."""

from __future__ import annotations

import pytest
import torch

from depthg_lib.env import resolve_device
from depthg_lib.errors import DepthGError


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x", ""])
def test_unknown_device_is_one_error_listing_the_choices(name):
    with pytest.raises(DepthGError) as err:
        resolve_device(name)
    assert f"unknown device {name!r}" in str(err.value)
    assert "auto, cpu, cuda or cuda:N" in str(err.value)


def test_known_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_a_gpu_this_machine_lacks_is_refused():
    beyond = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DepthGError, match="GPU"):
        resolve_device(f"cuda:{beyond}")


@pytest.mark.parametrize("module, args", [
    ("depthg_lib.depth", ["--profile", "test"]), ("depthg_lib.knn", ["--profile", "test"]),
    ("depthg_lib.train.__main__", ["--profile", "test"]),
    ("depthg_lib.evaluate", ["--profile", "test"]),
    ("depthg_lib.predict", ["photos/"]), ("depthg_lib.study.__main__", ["--profile", "test"])])
def test_cli_stops_at_the_argument(module, args, capsys):
    """Every command with --device refuses `tpu` before any work (even work it would skip)."""
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit) as stop:
        main([*args, "--device", "tpu"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device: unknown device 'tpu'" in err and "cpu" in err

