"""Model parts: golden cluster probe, head, linear probe, backbone loading in both layouts."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from depthg_lib import models
from depthg_lib.errors import DepthGError
from depthg_lib.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    ClusterProbe,
    LinearProbe,
    SegmentationHead,
    load_backbone,
    load_vit_weights,
)

GOLDEN = Path(__file__).parent / "data" / "golden"


# ----------------------------------------------------------------------------- probes, head

@pytest.fixture(scope="module")
def e_golden():
    return {k: torch.from_numpy(v) for k, v in np.load(GOLDEN / "e_cluster_lookup.npz").items()}


def _probe(g):
    probe = ClusterProbe(8, 5)
    with torch.no_grad():
        probe.clusters.copy_(g["clusters"])
    return probe


def test_cluster_probe_matches_golden(e_golden):
    probe, x = _probe(e_golden), e_golden["x"]
    assert probe.clusters.shape == (5, 8)
    loss, probs = probe(x, None)
    torch.testing.assert_close(loss, e_golden["loss_hard"], atol=1e-6, rtol=0)
    torch.testing.assert_close(probs, e_golden["probs_hard"], atol=1e-6, rtol=0)
    loss, probs = probe(x, alpha=2)
    torch.testing.assert_close(loss, e_golden["loss_alpha2"], atol=1e-6, rtol=0)
    torch.testing.assert_close(probs, e_golden["probs_alpha2"], atol=1e-6, rtol=0)
    log_probs = probe(x, alpha=2, log_probs=True)
    torch.testing.assert_close(log_probs, e_golden["log_probs_alpha2"], atol=1e-5, rtol=0)


def test_cluster_probe_trains_only_its_centroids(e_golden):
    probe, x = _probe(e_golden), e_golden["x"].clone().requires_grad_()
    loss, _ = probe(x.detach(), None)
    loss.backward()
    assert probe.clusters.grad is not None and x.grad is None


def test_head_is_linear_plus_nonlinear_with_two_dropout_masks():
    torch.manual_seed(0)
    head = SegmentationHead(12, 5)
    f = torch.randn(2, 12, 4, 4)
    head.eval()
    expected = head.linear(f) + head.nonlinear(f)
    torch.testing.assert_close(head(f), expected)
    head.train()
    a, b = head(f), head(f)
    assert a.shape == (2, 5, 4, 4) and not torch.allclose(a, b)  # dropout on
    linear_only = SegmentationHead(12, 5, dropout=False, nonlinear=False)
    torch.testing.assert_close(linear_only(f), linear_only.linear(f))
    assert isinstance(linear_only.dropout, torch.nn.Identity) and linear_only.nonlinear is None
    assert isinstance(head.dropout, torch.nn.Dropout2d) and head.dropout.p == 0.1


def test_linear_probe_ignores_255_and_minus_one_and_never_trains_the_code():
    torch.manual_seed(0)
    probe = LinearProbe(6, 3)
    code = torch.randn(2, 6, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, :2] = 255
    labels[1, :, :3] = -1
    loss = probe.loss(code, labels)
    logits = F.interpolate(probe(code.detach()), size=(8, 8), mode="bilinear",
                           align_corners=False)
    valid = (labels >= 0) & (labels < 3)
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], labels[valid])
    torch.testing.assert_close(loss, manual)
    loss.backward()
    assert code.grad is None and probe.conv.weight.grad is not None
    nothing = probe.loss(code, torch.full((2, 8, 8), 255))
    assert nothing.item() == 0.0


# ----------------------------------------------------------------------------- backbones

def _tiny_vit(**kw):
    args = dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=0,
                dynamic_img_size=True)
    args.update(kw)
    torch.manual_seed(1)
    return VisionTransformer(**args)


def test_backbone_normalises_and_returns_patch_token_maps():
    vit = _tiny_vit().eval()
    bb = Backbone(vit, "tiny", IMAGENET_MEAN, IMAGENET_STD)
    x = torch.rand(2, 3, 24, 40)
    out = bb(x)
    assert out.shape == (2, 16, 3, 5) and not out.requires_grad
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    tokens = vit.forward_features((x - mean) / std)[:, 1:]
    torch.testing.assert_close(out, tokens.transpose(1, 2).reshape(2, 16, 3, 5))
    assert (bb.patch_size, bb.dim, bb.name) == (8, 16, "tiny")
    bb.train()
    assert not bb.training and not bb.vit.training
    assert all(not p.requires_grad for p in bb.parameters())
    u8 = (x * 255).to(torch.uint8)
    torch.testing.assert_close(bb(u8), bb(u8.float() / 255))


def _dino_training_layout(sd):
    """The original DINO training checkpoint: teacher/student dicts, prefixes, a head."""
    teacher = {f"backbone.{k}": v for k, v in sd.items()}
    teacher["head.mlp.0.weight"] = torch.zeros(3, 3)
    student = {f"module.backbone.{k}": v for k, v in sd.items()}
    return {"teacher": teacher, "student": student, "epoch": 100}


@pytest.mark.parametrize("layout", ["plain.pth", "training.pth", "timm.safetensors"])
def test_vit_weights_load_in_every_layout(tmp_path, layout):
    src = _tiny_vit()
    sd = src.state_dict()
    path = tmp_path / f"w_{layout}"
    if layout == "plain.pth":
        torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    elif layout == "training.pth":
        torch.save(_dino_training_layout(sd), path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    dst = _tiny_vit(img_size=64)  # other pos_embed grid: resampled, as timm does
    torch.manual_seed(5)
    for p in dst.parameters():
        torch.nn.init.normal_(p)
    load_vit_weights(dst, path, "tiny")
    for k, v in dst.state_dict().items():
        if k != "pos_embed":
            torch.testing.assert_close(v, sd[k], msg=k)


def test_dinov2_layout_loads_through_timm_filter(tmp_path):
    src = _tiny_vit(init_values=1e-5)
    sd = dict(src.state_dict())
    sd["mask_token"] = torch.zeros(1, 16)  # only in original DINOv2 checkpoints
    torch.save(sd, tmp_path / "dinov2.pth")
    dst = _tiny_vit(init_values=1e-5)
    torch.nn.init.zeros_(dst.blocks[0].ls1.gamma)
    load_vit_weights(dst, tmp_path / "dinov2.pth", "tiny-dinov2")
    torch.testing.assert_close(dst.blocks[0].ls1.gamma, src.blocks[0].ls1.gamma)


def test_wrong_shapes_and_missing_files_are_one_clear_error(tmp_path):
    torch.save(_tiny_vit(embed_dim=24, num_heads=2).state_dict(), tmp_path / "wide.pth")
    with pytest.raises(DepthGError) as err:
        load_vit_weights(_tiny_vit(), tmp_path / "wide.pth", "tiny")
    msg = str(err.value)
    assert "wide.pth" in msg and "expected (1, 1, 16)" in msg and "found (1, 1, 24)" in msg
    torch.save(_tiny_vit(patch_size=4).state_dict(), tmp_path / "p4.pth")
    with pytest.raises(DepthGError, match="patch_embed.proj.weight: expected"):
        load_vit_weights(_tiny_vit(), tmp_path / "p4.pth", "tiny")
    with pytest.raises(DepthGError, match="missing.pth"):
        load_vit_weights(_tiny_vit(), tmp_path / "missing.pth", "tiny")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DepthGError, match="junk.pth"):
        load_vit_weights(_tiny_vit(), tmp_path / "junk.pth", "tiny")
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DepthGError, match="missing keys"):
        load_vit_weights(_tiny_vit(), tmp_path / "other.pth", "tiny")


def test_load_backbone_dino_vits8_from_the_original_layout(tmp_path, monkeypatch):
    """The real ViT-S/8 architecture, weights saved as a DINO training checkpoint under the
    original file name in the default folder, loaded by alias without any network."""
    monkeypatch.setenv("DEPTHG_BACKBONE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DepthGError, match="dino_deitsmall8_pretrain.pth"):
        load_backbone("dino_vits8")
    meta = models._on_meta(lambda: models.build_timm_vit("vit_small_patch8_224.dino"))
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(v.shape, generator=gen) * 0.02 for k, v in meta.state_dict().items()}
    torch.save(_dino_training_layout(sd), tmp_path / "dino_deitsmall8_pretrain.pth")
    bb = load_backbone("dino_vits8")
    assert (bb.name, bb.patch_size, bb.dim) == ("vit_small_patch8_224.dino", 8, 384)
    torch.testing.assert_close(bb.vit.blocks[3].attn.qkv.weight, sd["blocks.3.attn.qkv.weight"])
    assert bb(torch.rand(1, 3, 32, 48)).shape == (1, 384, 4, 6)
    assert not any(t.is_meta for t in bb.state_dict().values())


def test_unknown_backbone_names_the_choices():
    with pytest.raises(DepthGError, match="dinov2_vits14"):
        load_backbone("resnet50")


def test_embedded_random_is_fixed_and_embedded_needs_its_file():
    from depthg_lib import embedded

    a, b = load_backbone("embedded-random"), load_backbone("embedded-random")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    out = a(torch.rand(2, 3, 32, 40))
    assert out.shape == (2, a.dim, 4, 5) and a.patch_size == 8
    assert torch.equal(a.mean.flatten(), torch.tensor(embedded.EMBEDDED_MEAN))
    if embedded.embedded_weights_available("vit"):
        trained = load_backbone("embedded")
        assert not torch.equal(trained.vit.pos_embed, a.vit.pos_embed)
    else:
        with pytest.raises(DepthGError, match="embedded_vit"):
            load_backbone("embedded")


def test_default_weights_dir_is_in_the_repository(monkeypatch):
    monkeypatch.delenv("DEPTHG_BACKBONE_DIR", raising=False)
    assert models.backbone_weights_dir().parts[-3:] == ("data", "models", "backbones")


def test_embedded_loads_a_given_weights_file(tmp_path):
    rand = load_backbone("embedded-random")
    sd = {k: v * 0.5 for k, v in rand.vit.state_dict().items()}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "vit.safetensors"))
    bb = load_backbone("embedded", weights=tmp_path / "vit.safetensors")
    for k, v in bb.vit.state_dict().items():
        torch.testing.assert_close(v, sd[k], msg=k)
    x = torch.rand(1, 3, 16, 16)
    assert not torch.allclose(bb(x), rand(x))


def test_weights_identity_changes_with_the_weights(tmp_path):
    from depthg_lib.embedded import read_manifest
    from depthg_lib.models import weights_identity

    assert weights_identity("embedded-random") == "random"
    assert weights_identity("embedded") == "sha256:" + read_manifest().get("vit", {}).get(
        "sha256", "")
    path = tmp_path / "w.pth"
    path.write_bytes(b"12345")
    first = weights_identity("vit_small_patch8_224.dino", path)
    path.write_bytes(b"123456")
    assert weights_identity("vit_small_patch8_224.dino", path) != first
