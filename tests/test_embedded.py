"""Embedded models: contract, checksums, clear errors, shapes, a 2-step pretrain with
resume and export. Quality is measured by benchmarks/embedded_quality.py, not here."""

from __future__ import annotations

import json

import pytest
import torch

from depthg_lib import embedded
from depthg_lib.errors import DepthGError

torch.set_num_threads(1)


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    """An empty weights folder the library reads instead of the shipped one."""
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setattr(embedded, "WEIGHTS_DIR", d)
    return d


def _write_weights(kind: str, weights_dir) -> dict[str, torch.Tensor]:
    """Export a random-init model through the real export path (a fake 1-step checkpoint)."""
    from safetensors.torch import save_file

    from depthg_lib.io import save_json, sha256_file

    torch.manual_seed(0)
    model = embedded.build_embedded_vit() if kind == "vit" else embedded.build_embedded_depth_net()
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous()
          for k, v in model.state_dict().items()}
    path = weights_dir / embedded.WEIGHT_FILES[kind]
    save_file(sd, str(path))
    save_json(weights_dir / "manifest.json",
              {kind: {"file": path.name, "sha256": sha256_file(path), "command": "retrain-cmd"}})
    return sd


# ------------------------------------------------------------------ shipped weights

@pytest.mark.parametrize("kind", ["vit", "depth"])
def test_shipped_weights_match_manifest(kind):
    """The files that ship are the ones the manifest describes (skipped before they ship)."""
    if not embedded.embedded_weights_available(kind):
        pytest.skip(f"embedded {kind} weights not shipped yet")
    from depthg_lib.io import sha256_file

    entry = embedded.read_manifest()[kind]
    path = embedded.weights_path(kind)
    assert sha256_file(path) == entry["sha256"]
    assert path.stat().st_size == entry["bytes"] <= 8 * 2**20
    sd = embedded.load_embedded_state_dict(kind)
    model = embedded.build_embedded_vit() if kind == "vit" else embedded.build_embedded_depth_net()
    model.load_state_dict(sd, strict=True)
    if kind == "vit":
        assert entry["architecture"]["embed_dim"] == model.embed_dim
        assert entry["training"]["data"]["seed"] != 2024  # never the evaluation seed


# ------------------------------------------------------------------ contract

def test_vit_contract():
    vit = embedded.build_embedded_vit()
    from timm.models.vision_transformer import VisionTransformer

    assert isinstance(vit, VisionTransformer)
    assert vit.patch_embed.patch_size == (8, 8)
    n_params = sum(p.numel() for p in vit.parameters())
    assert n_params * 2 <= 8 * 2**20  # fp16 fits the 8 MB budget
    feats = vit.forward_features(torch.rand(2, 3, 48, 64))  # dynamic size, not 64x64
    assert feats.shape == (2, vit.num_prefix_tokens + 6 * 8, vit.embed_dim)
    assert vit.forward(torch.rand(1, 3, 64, 64)).shape == (1, vit.embed_dim)  # no classifier
    assert len(embedded.EMBEDDED_MEAN) == len(embedded.EMBEDDED_STD) == 3


def test_depth_net_and_wrapper_shapes():
    net = embedded.build_embedded_depth_net().eval()
    s = net.stride
    assert net(torch.randn(2, 3, 2 * s, 3 * s)).shape == (2, 1, 2 * s, 3 * s)
    model = embedded.EmbeddedDepthModel(pretrained=False)
    for h, w in [(37, 50), (128, 128), (96, 160)]:
        out = model.estimate_depth(torch.rand(3, 3, h, w))
        assert out.shape == (3, h, w) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


# ------------------------------------------------------------------ checksums and errors

@pytest.mark.parametrize("kind", ["vit", "depth"])
def test_missing_weights_is_one_clear_error(weights_dir, kind):
    assert not embedded.embedded_weights_available(kind)
    with pytest.raises(DepthGError) as err:
        embedded.load_embedded_state_dict(kind)
    msg = str(err.value)
    assert embedded.WEIGHT_FILES[kind] in msg and f"depthg_lib.pretrain {kind}" in msg


def test_checksum_verified_and_roundtrip(weights_dir):
    sd = _write_weights("depth", weights_dir)
    assert embedded.embedded_weights_available("depth")
    loaded = embedded.load_embedded_state_dict("depth")
    assert loaded.keys() == sd.keys()
    assert all(loaded[k].dtype == (torch.float32 if sd[k].is_floating_point() else sd[k].dtype)
               for k in sd)
    model = embedded.EmbeddedDepthModel()  # loads strict through the same path
    assert model.estimate_depth(torch.rand(1, 3, 32, 32)).shape == (1, 32, 32)


def test_checksum_mismatch_names_file_and_command(weights_dir):
    _write_weights("vit", weights_dir)
    path = weights_dir / embedded.WEIGHT_FILES["vit"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DepthGError) as err:
        embedded.load_embedded_state_dict("vit")
    msg = str(err.value)
    assert "sha256" in msg and str(path) in msg and "retrain-cmd" in msg


def test_file_not_in_manifest_is_an_error(weights_dir):
    _write_weights("vit", weights_dir)
    (weights_dir / "manifest.json").write_text(json.dumps({}))
    with pytest.raises(DepthGError, match="not listed"):
        embedded.load_embedded_state_dict("vit")


# ------------------------------------------------------------------ pretraining smoke runs

@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    from depthg_lib.data import synthscenes

    d = tmp_path_factory.mktemp("scenes")
    synthscenes.generate(d, n_train=6, n_val=0, size=32, seed=3, progress=False)
    return d


def _cli(*args):
    from depthg_lib.pretrain.__main__ import main

    return main([str(a) for a in args])


@pytest.mark.parametrize("kind", ["vit", "depth"])
def test_two_step_pretrain_resume_and_export(tiny_scenes, tmp_path, weights_dir, monkeypatch,
                                             kind):
    from depthg_lib.pretrain import common
    from depthg_lib.pretrain.depth import DepthTrainer
    from depthg_lib.pretrain.vit import VICRegLTrainer

    args = ["--steps", 2, "--data", tiny_scenes, "--n-train", 6, "--size", 32,
            "--data-seed", 3, "--batch", 2, "--seed", 5]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert _cli(kind, "--out", straight, *args) == 0
    ref = torch.load(straight / "checkpoint.pt", weights_only=False)["trainer"]
    assert ref["step"] == 2
    log = (straight / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,elapsed_s,loss") and len(log) == 3  # steps 1 and 2
    with pytest.raises(DepthGError, match="--resume"):
        _cli(kind, "--out", straight, *args)  # never silently overwrites a run

    # the same run interrupted after step 1 (checkpoint every step) ...
    trainer = VICRegLTrainer if kind == "vit" else DepthTrainer
    real_step = trainer.step

    def interrupted(self):
        if self.step_idx == 1:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(common.Timer, "due", lambda self: True)
    monkeypatch.setattr(trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _cli(kind, "--out", broken, *args)
    monkeypatch.setattr(trainer, "step", real_step)
    assert torch.load(broken / "checkpoint.pt", weights_only=False)["trainer"]["step"] == 1
    with pytest.raises(DepthGError, match="other settings"):
        _cli(kind, "--out", broken, "--resume", *args[:-1], 6)  # another seed is refused
    # ... and resumed gives exactly the uninterrupted result: reproducible from the seed
    assert _cli(kind, "--out", broken, "--resume", *args) == 0
    res = torch.load(broken / "checkpoint.pt", weights_only=False)["trainer"]
    weights = "student" if kind == "vit" else "net"
    for k, v in ref[weights].items():
        torch.testing.assert_close(res[weights][k], v, rtol=0, atol=0)
    assert len((broken / "log.csv").read_text().splitlines()) == 3

    # export writes fp16 safetensors + manifest, and the library loads them strictly
    assert _cli("export", kind, "--out", straight, "--weights-dir", weights_dir) == 0
    entry = embedded.read_manifest()[kind]
    assert entry["training"]["steps"] == 2 and entry["training"]["data"]["seed"] == 3
    assert entry["dtype"] == "float16" and f"pretrain {kind}" in entry["command"]
    sd = embedded.load_embedded_state_dict(kind)
    key = "pos_embed" if kind == "vit" else "out.weight"
    expected = ref["student"]["backbone." + key] if kind == "vit" else ref["net"][key]
    torch.testing.assert_close(sd[key], expected.half().float())


def test_crop_correspondence_finds_the_same_scene_point():
    """The dense loss pairs patches by the crop geometry: check it on an image whose pixels
    encode their own coordinates (flips included)."""
    import torch.nn.functional as F

    from depthg_lib.pretrain import augment

    gen = torch.Generator().manual_seed(0)
    h = w = 64
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    img = torch.stack([xx / w, yy / h, torch.zeros_like(xx)])[None].repeat(6, 1, 1, 1)
    idx = torch.arange(6)
    v1, b1, f1 = augment.random_resized_crop(img, idx, 32, (0.2, 0.6), gen)
    v2, b2, f2 = augment.random_resized_crop(img, idx, 32, (0.2, 0.6), gen)
    assert f1.any() and (~f1).any()
    xy, inside = augment.correspondence(b1, f1, b2, f2, 4)
    found = F.grid_sample(F.avg_pool2d(v2, 8), xy, align_corners=False, padding_mode="border")
    err = (found - F.avg_pool2d(v1, 8))[:, :2].abs().amax(1)[inside] * w
    assert inside.any() and err.max() < 4.0  # within half a patch (edge patches clamp)
    assert err.median() < 0.5
