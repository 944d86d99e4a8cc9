"""`depthg_lib.fetch` with no network: a local HTTP server on 127.0.0.1 stands in for the DINO
and STEGO storage (with Range support, a transfer cut in the middle, a corrupted file), and a
Hugging Face cache written in its real on-disk layout stands in for the hub (offline)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socket
import threading
import zipfile
from pathlib import Path

import pytest
from fakes_data import make_cityscapes

from depthg_lib import fetch as F
from depthg_lib.errors import DepthGError
from depthg_lib.fetch import downloads, sources
from depthg_lib.rehearse.project import human_bytes


class Storage(http.server.ThreadingHTTPServer):
    """Serves `files` (URL path → bytes). `cut[path] = n` ends the next transfer of that path
    after n bytes; `corrupt` flips a byte of everything it sends. Requests are logged."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.corrupt = False
        self.log: list[tuple[str, str, str | None]] = []
        self.sent = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _body(self):
        data = self.server.files.get(self.path)
        if data is not None and self.server.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def do_HEAD(self):
        self.server.log.append(("HEAD", self.path, None))
        data = self._body()
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        rng = self.headers.get("Range")
        self.server.log.append(("GET", self.path, rng))
        data = self._body()
        if data is None:
            self.send_error(404)
            return
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        if start >= len(data):
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut.pop(self.path, None)
        if cut is not None:  # announce everything, send part of it, drop the connection
            body = body[:cut]
        self.server.sent += len(body)  # counted before the client can have read it all
        self.wfile.write(body)
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def storage():
    server = Storage()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def cityscapes_zip(tmp_path: Path) -> bytes:
    """A tiny `cityscapes.zip` in STEGO's layout: one top folder `cityscapes/` holding
    torchvision's leftImg8bit/ and gtFine/ trees."""
    src = make_cityscapes(tmp_path / "src" / "cityscapes")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, Path("cityscapes") / path.relative_to(src))
    return buf.getvalue()


@pytest.fixture
def profile(tmp_path):
    """cityscapes-vitb8 with its data under tmp_path (the profiles' real paper settings)."""
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: stego-cityscapes-vitb8\nname: stego-cityscapes-vitb8\n"
                    f"data_root: {tmp_path / 'data'}\n")
    return str(path)


@pytest.fixture
def served(storage, tmp_path, monkeypatch):
    """The STEGO storage and the DINO release, both on the local server."""
    archive = cityscapes_zip(tmp_path)
    ckpt = os.urandom(50_000)
    dino = os.urandom(120_000)
    storage.files["/stego/pytorch_data/cityscapes.zip"] = archive
    storage.files["/stego/saved_models/cityscapes_vit_base_1.ckpt"] = ckpt
    storage.files["/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"] = dino
    monkeypatch.setenv(sources.ENV_STEGO, storage.url + "stego")
    monkeypatch.setenv(sources.ENV_DINO, storage.url + "dino/")
    monkeypatch.setenv("DEPTHG_BACKBONE_DIR", str(tmp_path / "backbones"))
    return {"zip": archive, "ckpt": ckpt, "dino": dino}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ledger(tmp_path) -> dict:
    return json.loads((tmp_path / "data" / downloads.LEDGER).read_text())["files"]


# ------------------------------------------------------------------------------ HTTP

def test_full_fetch_puts_everything_where_the_profile_reads_it(served, storage, profile,
                                                               tmp_path, capsys):
    F.fetch(profile, only=("backbone", "dataset", "checkpoint"), progress=False)
    data = tmp_path / "data"
    # the dataset is extracted into the profile's dataset folder and passes the data check
    assert (data / "cityscapes" / "leftImg8bit" / "train").is_dir()
    assert "usable" in capsys.readouterr().out
    assert not (data / "downloads" / "cityscapes.zip").exists()  # deleted after extraction
    assert not list(data.glob(".extract-*"))
    weights = tmp_path / "backbones" / "vit_base_patch8_224.dino.pth"
    assert weights.read_bytes() == served["dino"]
    ckpt = data / "models" / "released" / "cityscapes_vit_base_1.ckpt"
    assert ckpt.read_bytes() == served["ckpt"]
    ledger = _ledger(tmp_path)
    assert ledger[storage.url + "stego/pytorch_data/cityscapes.zip"]["sha256"] == _sha(
        served["zip"])
    assert ledger[storage.url + "dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth"][
        "sha256"] == _sha(served["dino"])
    # a second run finds everything present and downloads nothing
    before = storage.sent
    outcomes = [o for _, o in F.fetch(profile, only=("backbone", "dataset", "checkpoint"),
                                      progress=False, verify=True)]
    assert storage.sent == before
    assert all(o.startswith("present") for o in outcomes), outcomes


def test_interrupted_download_resumes_with_a_range_request(served, storage, profile, tmp_path):
    path = "/stego/saved_models/cityscapes_vit_base_1.ckpt"
    storage.cut[path] = 20_000
    with pytest.raises(DepthGError, match="interrupted at 20000 of 50000 bytes.*resume"):
        F.fetch(profile, only=("checkpoint",), progress=False)
    dest = tmp_path / "data" / "models" / "released" / "cityscapes_vit_base_1.ckpt"
    part = dest.with_name(dest.name + ".part")
    assert part.stat().st_size == 20_000 and not dest.exists()
    sent = storage.sent
    F.fetch(profile, only=("checkpoint",), progress=False)
    assert ("GET", path, "bytes=20000-") in storage.log
    assert storage.sent - sent == 30_000  # only the rest was sent again
    assert dest.read_bytes() == served["ckpt"] and not part.exists()



def test_a_whole_file_left_in_its_part_is_finished_without_sending_it_again(served, storage,
                                                                            profile, tmp_path):
    """The server answers 416 to a range after a complete `.part`: the file is checked,
    recorded and renamed into place; a `.part` longer than the file is downloaded anew."""
    path, data = "/stego/saved_models/cityscapes_vit_base_1.ckpt", served["ckpt"]
    dest = tmp_path / "data" / "models" / "released" / "cityscapes_vit_base_1.ckpt"
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True)
    part.write_bytes(data)
    F.fetch(profile, only=("checkpoint",), progress=False)
    assert storage.sent == 0 and ("HEAD", path, None) in storage.log
    assert dest.read_bytes() == data and not part.exists()
    url = storage.url + "stego/saved_models/" + dest.name
    assert _ledger(tmp_path)[url]["sha256"] == _sha(data)
    dest.unlink()
    part.write_bytes(data + b"more")
    F.fetch(profile, only=("checkpoint",), progress=False)
    assert storage.sent == len(data) and dest.read_bytes() == data and not part.exists()


def test_corrupted_download_is_refused(served, storage, profile, tmp_path):
    F.fetch(profile, only=("checkpoint",), progress=False)  # records the sha256
    dest = tmp_path / "data" / "models" / "released" / "cityscapes_vit_base_1.ckpt"
    dest.unlink()
    storage.corrupt = True
    with pytest.raises(DepthGError, match="checksum mismatch") as err:
        F.fetch(profile, only=("checkpoint",), progress=False)
    assert _sha(served["ckpt"]) in str(err.value)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()


def test_truncated_present_file_is_caught(served, profile, tmp_path):
    F.fetch(profile, only=("checkpoint",), progress=False)
    dest = tmp_path / "data" / "models" / "released" / "cityscapes_vit_base_1.ckpt"
    dest.write_bytes(served["ckpt"][:100])
    with pytest.raises(DepthGError, match="has 100 bytes but 50000 were downloaded"):
        F.fetch(profile, only=("checkpoint",), progress=False)


def test_dry_run_prints_the_plan_and_changes_nothing(served, storage, profile, tmp_path,
                                                     capsys):
    F.fetch(profile, only=("backbone", "dataset", "checkpoint"), dry_run=True)
    out = capsys.readouterr().out
    assert "cityscapes.zip" in out and "cityscapes_vit_base_1.ckpt" in out
    assert "dino_vitbase8_pretrain.pth" in out and "from the server" in out
    assert human_bytes(len(served["ckpt"])) in out and "disk needed about" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "backbones").exists()
    assert all(method == "HEAD" for method, _, _ in storage.log)


def test_offline_is_one_clear_error(profile, tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(sources.ENV_STEGO, f"http://127.0.0.1:{port}/")
    with pytest.raises(DepthGError, match="cannot reach 127.0.0.1.*looks offline"):
        F.fetch(profile, only=("checkpoint",), progress=False)


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(DepthGError, match="outside the folder"):
        downloads.extract_zip(archive, tmp_path / "data" / "evil")
    assert not (tmp_path / "data" / "outside.txt").exists()
    assert not (tmp_path / "data" / "evil").exists()


def test_depthg_checkpoints_are_placed_by_hand(tmp_path, capsys, monkeypatch):
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: cityscapes-vitb8\nname: cityscapes-vitb8\n"
                    f"data_root: {tmp_path}\n")
    (outcome,) = [o for _, o in F.fetch(str(path), only=("checkpoint",), progress=False)]
    assert outcome.startswith("NOT FETCHED") and "Google Drive" in outcome
    assert str(tmp_path / "models" / "released" / "cityscapes_vitb.ckpt") in outcome


def test_cli(served, profile, tmp_path, capsys):
    from depthg_lib.fetch import main

    assert main(["--profile", profile, "--only", "checkpoint"]) == 0
    assert "cityscapes_vit_base_1.ckpt" in capsys.readouterr().out
    assert (tmp_path / "data" / "models" / "released" / "cityscapes_vit_base_1.ckpt").is_file()


# ------------------------------------------------------------------------------ the hub

def _put_in_hub_cache(cache: Path, repo: str, files: dict[str, bytes], rev: str = "a" * 40):
    """The hub cache's real layout: blobs named by sha256, snapshot entries linking to them,
    refs/main holding the revision."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = folder / "blobs" / _sha(data)
        blob.write_bytes(data)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def _tiny_depth_anything_files(tmp_path) -> dict[str, bytes]:
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    backbone = Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=32,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                                 head_hidden_size=8, patch_size=14)
    out = tmp_path / "tiny_da"
    DepthAnythingForDepthEstimation(config).save_pretrained(out)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                      ensure_multiple_of=14, do_pad=False).save_pretrained(out)
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DEPTHG_BACKBONE_DIR", str(tmp_path / "backbones"))
    return cache


def test_hub_cache_resolves_depth_model_and_dinov2_offline(hub, tmp_path):
    import torch
    from safetensors.torch import save

    from depthg_lib.depth_models import load_depth_model, resolve_model_dir

    repo = "depth-anything/Depth-Anything-V2-Small-hf"
    snap = _put_in_hub_cache(hub, repo, _tiny_depth_anything_files(tmp_path))
    weights = save({"pos_embed": torch.randn(1, 5, 8)})
    _put_in_hub_cache(hub, "timm/vit_small_patch14_dinov2.lvd142m",
                      {"model.safetensors": weights, "config.json": b"{}"})
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: demo\nbackbone: dinov2_vits14\ndepth_backend: depth_anything\n"
                    f"data_root: {tmp_path / 'data'}\n")
    done = dict((item.kind, outcome) for item, outcome in F.fetch(str(path), progress=False))
    assert done["depth"] == f"in the hub cache: {snap}"
    link = tmp_path / "backbones" / "vit_small_patch14_dinov2.lvd142m.safetensors"
    assert done["backbone"].startswith("linked") and link.read_bytes() == weights
    # the stages find the same files, offline
    assert resolve_model_dir("depth_anything", repo, tmp_path / "none")[1] == snap
    model = load_depth_model("depth_anything", repo, model_dir=tmp_path / "none")
    assert model.estimate_depth(torch.rand(1, 3, 28, 28)).shape == (1, 28, 28)
    ledger = _ledger(tmp_path)
    assert ledger[f"hf://{repo}@{'a' * 40}"]["files"]["model.safetensors"] == _sha(
        (snap / "model.safetensors").read_bytes())


def test_hub_model_missing_offline_is_one_clear_error(hub, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: demo\ndepth_backend: zoedepth\ndata_root: {tmp_path}\n")
    with pytest.raises(DepthGError, match="Intel/zoedepth-nyu is not in the Hugging Face cache"
                       ".*HF_HUB_OFFLINE"):
        F.fetch(str(path), progress=False)
    F.fetch(str(path), dry_run=True)  # the plan still prints


def test_every_paper_profile_has_a_plan(monkeypatch, tmp_path):
    from depthg_lib.config import available_profiles, load_profile

    monkeypatch.setenv("DEPTHG_BACKBONE_DIR", str(tmp_path))
    for name in available_profiles():
        profile = load_profile(name)
        kinds = {item.kind for item in F.plan(profile)}
        if profile.dataset in sources.DATASETS:
            assert {"backbone", "depth", "dataset"} <= kinds, name
    (item,) = F.plan("cocostuff27-vits8", only=("backbone",))
    assert item.url.endswith("dino_deitsmall8_300ep_pretrain/dino_deitsmall8_300ep_pretrain.pth")
    (item,) = F.plan("stego-potsdam-vits8", only=("checkpoint",))
    assert item.url == sources.STEGO_URL + "saved_models/potsdam_test.ckpt" and not item.manual
