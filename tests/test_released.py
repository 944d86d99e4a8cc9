"""Importing released STEGO/DepthG Lightning checkpoints (depthg_lib.released).

The checkpoints here are written in the released layout (key names, Lightning top level,
hyper_parameters with a pickled omegaconf DictConfig) by stand-in classes that pickle under
the real module names (omegaconf, pytorch_lightning), which are then removed again, so the
loader must read them without either package. The stand-in layout is checked against the one
the released classes save (tests/data/released/state-dict-layout.json); the expected codes come
from timm's VisionTransformer at its native size (an implementation of DINO's ViT that is not
this project's) and, for other sizes, from a re-implementation of the released forward pass
written here in float64.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import sys
import types
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from depthg_lib.errors import DepthGError
from depthg_lib.released import (
    check_fits_profile,
    is_released_checkpoint,
    load_released,
    paper_numbers,
    plain,
)

torch.set_num_threads(1)

C, DEPTH, HEADS, PATCH, GRID, D, K = 128, 2, 2, 8, 28, 12, 5
MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
CONFIG = {"output_root": "../", "experiment_name": "exp1", "arch": "dino",
          "model_type": "vit_custom", "dino_patch_size": 8, "dino_feat_type": "feat",
          "projection_type": "nonlinear", "continuous": True, "dim": D, "extra_clusters": 0,
          "dataset_name": "cityscapes", "res": 224, "lr": 5e-4, "crop_types": ["five", None],
          "nested": {"pretrained_weights": None, "missing": "???"}}


# --------------------------------------------------------------- stand-ins that pickle as
# omegaconf / pytorch_lightning classes (the real packages are not installed here)

@dataclasses.dataclass
class Metadata:
    ref_type: typing.Any
    object_type: typing.Any
    optional: bool
    key: typing.Any
    flags: dict = dataclasses.field(default_factory=dict)
    flags_root: bool = False
    resolver_cache: dict = dataclasses.field(
        default_factory=lambda: collections.defaultdict(dict))


@dataclasses.dataclass
class ContainerMetadata(Metadata):
    key_type: typing.Any = None
    element_type: typing.Any = None


class _Node:
    def __init__(self, value, parent, key):
        self.__dict__.update(_metadata=Metadata(typing.Any, None, True, key), _parent=parent,
                             _val=value, _flags_cache=None)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_flags_cache"}


class AnyNode(_Node):
    pass


class _Container:
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_flags_cache"}


def _wrap(value, parent, key):
    if isinstance(value, dict):
        return DictConfig(value, parent, key)
    if isinstance(value, list):
        return ListConfig(value, parent, key)
    return AnyNode(value, parent, key)


class DictConfig(_Container):
    def __init__(self, content, parent=None, key=None):
        meta = ContainerMetadata(typing.Any, dict, True, key, {"struct": False},
                                 key_type=typing.Any, element_type=typing.Any)
        self.__dict__.update(_metadata=meta, _parent=parent, _flags_cache=None)
        # omegaconf keeps "???" and interpolations as raw strings in a node
        self.__dict__["_content"] = {k: _wrap(v, self, k) for k, v in content.items()}


class ListConfig(_Container):
    def __init__(self, content, parent=None, key=None):
        meta = ContainerMetadata(typing.Any, list, True, key, element_type=typing.Any)
        self.__dict__.update(_metadata=meta, _parent=parent, _flags_cache=None)
        self.__dict__["_content"] = [_wrap(v, self, i) for i, v in enumerate(content)]


class ModelCheckpoint:
    pass


class Evil:
    """Would run a shell command if the loader honoured arbitrary globals."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


_HOMES = {"omegaconf.dictconfig": [DictConfig], "omegaconf.listconfig": [ListConfig],
          "omegaconf.base": [Metadata, ContainerMetadata], "omegaconf.nodes": [AnyNode],
          "pytorch_lightning.callbacks.model_checkpoint": [ModelCheckpoint]}


@contextlib.contextmanager
def released_packages():
    """While a checkpoint is written: the stand-ins pickle under the real module names.
    Afterwards those modules are gone again, as on a machine without them."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("omegaconf", "pytorch_lightning", "pytorch_lightning.callbacks"):
            mp.setitem(sys.modules, name, types.ModuleType(name))
        for module, classes in _HOMES.items():
            mod = types.ModuleType(module)
            for cls in classes:
                mp.setattr(cls, "__module__", module)
                setattr(mod, cls.__name__, cls)
            mp.setitem(sys.modules, module, mod)
        yield


def save(obj, path):
    with released_packages():
        torch.save(obj, path)
    assert "omegaconf" not in sys.modules and "pytorch_lightning" not in sys.modules


def _state_dict(seed=0, nonlinear=True, extra=0):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.05, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    sd = collections.OrderedDict()
    sd["net.model.cls_token"] = rnd(1, 1, C, std=0.5)
    sd["net.model.pos_embed"] = rnd(1, GRID * GRID + 1, C, std=0.5)
    sd["net.model.patch_embed.proj.weight"] = rnd(C, 3, PATCH, PATCH, std=0.1)
    sd["net.model.patch_embed.proj.bias"] = rnd(C)
    for i in range(DEPTH):
        pre = f"net.model.blocks.{i}."
        sd[pre + "norm1.weight"], sd[pre + "norm1.bias"] = rnd(C, std=0.1, mean=1), rnd(C)
        sd[pre + "attn.qkv.weight"], sd[pre + "attn.qkv.bias"] = rnd(3 * C, C, std=0.1), rnd(3 * C)
        sd[pre + "attn.proj.weight"], sd[pre + "attn.proj.bias"] = rnd(C, C), rnd(C)
        sd[pre + "norm2.weight"], sd[pre + "norm2.bias"] = rnd(C, std=0.1, mean=1), rnd(C)
        sd[pre + "mlp.fc1.weight"], sd[pre + "mlp.fc1.bias"] = rnd(4 * C, C), rnd(4 * C)
        sd[pre + "mlp.fc2.weight"], sd[pre + "mlp.fc2.bias"] = rnd(C, 4 * C), rnd(C)
    sd["net.model.norm.weight"], sd["net.model.norm.bias"] = rnd(C, std=0.1, mean=1), rnd(C)
    sd["net.cluster1.0.weight"], sd["net.cluster1.0.bias"] = rnd(D, C, 1, 1, std=0.1), rnd(D)
    if nonlinear:
        sd["net.cluster2.0.weight"] = rnd(C, C, 1, 1, std=0.1)
        sd["net.cluster2.0.bias"] = rnd(C)
        sd["net.cluster2.2.weight"], sd["net.cluster2.2.bias"] = rnd(D, C, 1, 1, std=0.1), rnd(D)
    sd["train_cluster_probe.clusters"] = rnd(K, D, std=1)
    sd["cluster_probe.clusters"] = rnd(K + extra, D, std=1)
    sd["linear_probe.weight"], sd["linear_probe.bias"] = rnd(K, D, 1, 1), rnd(K)
    sd["decoder.weight"], sd["decoder.bias"] = rnd(C, D, 1, 1), rnd(C)
    return sd


def write_released(path: Path, lightning="2.0.1.post0", sd=None, config=None, extra=None):
    """A checkpoint in the layout Lightning writes for LitUnsupervisedSegmenter."""
    sd = _state_dict() if sd is None else sd
    if lightning.startswith("1."):  # before PL 1.5: callbacks keyed by the class object
        callbacks = {ModelCheckpoint: {"best_model_score": torch.tensor(21.5),
                                       "dirpath": "checkpoints"}}
    else:
        callbacks = {"ModelCheckpoint{'monitor': 'test/cluster/mIoU', 'mode': 'max'}":
                     {"best_model_score": torch.tensor(21.5), "dirpath": "checkpoints"}}
    head_keys = [k for k in sd if k.startswith("net.cluster")]
    ckpt = {"epoch": 1, "global_step": 3, "pytorch-lightning_version": lightning,
            "state_dict": sd, "callbacks": callbacks,
            "optimizer_states": [{"state": {i: {"step": torch.tensor(1.0),
                                                "exp_avg": torch.zeros_like(sd[k])}
                                            for i, k in enumerate(head_keys)},
                                  "param_groups": [{"lr": 5e-4, "params": list(range(156))}]}],
            "lr_schedulers": [], "hparams_name": "kwargs",
            "hyper_parameters": {"n_classes": K, "cfg": DictConfig(config or CONFIG)}}
    if not lightning.startswith("1."):
        ckpt["loops"] = {"fit_loop": {"state_dict": {}}, "validate_loop": {}}
    ckpt.update(extra or {})
    save(ckpt, path)
    return path


@pytest.fixture
def released(tmp_path):
    return write_released(tmp_path / "released.ckpt")


# --------------------------------------------------------------- the reference forward

def reference_codes(sd, images, heads=HEADS, size_mode="dino"):
    """The released network's `net(img)[1]`, written out step by step in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    x = (images.double() - MEAN) / STD
    b, _, h_px, w_px = x.shape
    t = F.conv2d(x, sd["net.model.patch_embed.proj.weight"],
                 sd["net.model.patch_embed.proj.bias"], stride=PATCH)
    h, w = t.shape[-2:]
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat([sd["net.model.cls_token"].expand(b, -1, -1), t], dim=1)
    pos = sd["net.model.pos_embed"]
    if not (h_px == w_px and h * w == pos.shape[1] - 1):
        n = int(math.sqrt(pos.shape[1] - 1))
        grid = pos[0, 1:].T.reshape(1, C, n, n)
        if size_mode == "dino":  # DINO: scale factor (h + 0.1) / n, positions follow it
            grid = F.interpolate(grid, scale_factor=((h + 0.1) / n, (w + 0.1) / n),
                                 mode="bicubic", align_corners=False)
        else:  # what timm's dynamic_img_size does instead: exactly h × w
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:, :1], grid.reshape(1, C, h * w).transpose(1, 2)], dim=1)
    t = t + pos
    n_tok = t.shape[1]
    for i in range(DEPTH):
        p = f"net.model.blocks.{i}."
        y = F.layer_norm(t, (C,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = y @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = qkv.reshape(b, n_tok, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (C // heads) ** -0.5).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n_tok, C)
        t = t + out @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        y = F.layer_norm(t, (C,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        hidden = F.gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        t = t + hidden @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    t = F.layer_norm(t, (C,), sd["net.model.norm.weight"], sd["net.model.norm.bias"], eps=1e-6)
    feats = t[:, 1:].transpose(1, 2).reshape(b, C, h, w)
    code = F.conv2d(feats, sd["net.cluster1.0.weight"], sd["net.cluster1.0.bias"])
    if "net.cluster2.0.weight" in sd:
        mid = F.relu(F.conv2d(feats, sd["net.cluster2.0.weight"], sd["net.cluster2.0.bias"]))
        code = code + F.conv2d(mid, sd["net.cluster2.2.weight"], sd["net.cluster2.2.bias"])
    return code


def _images(h, w, n=1, seed=3):
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------- tests

def test_codes_equal_the_released_forward(released):
    model = load_released(released)
    sd = _state_dict()
    for (h, w), tol in (((224, 224), 1e-4), ((320, 320), 1e-3), ((320, 224), 1e-3)):
        images = _images(h, w)
        got = model.codes(images)
        assert got.shape == (1, D, h // PATCH, w // PATCH) and got.dtype == torch.float32
        err = (got.double() - reference_codes(sd, images)).abs().max().item()
        assert err < tol, ((h, w), err)


def test_the_stand_in_checkpoint_has_the_released_layout():
    """The checkpoints these tests write follow the layout the released classes save
    (tests/data/released/state-dict-layout.json, observed on a ViT-B/8, dim 100, 27 classes):
    the same keys in the same order and shapes once the sizes are scaled to this toy (768 → C,
    100 → D, 27 → K, 28×28 + 1 tokens; 12 blocks → DEPTH)."""
    import json

    layout = json.loads((Path(__file__).parent / "data/released/state-dict-layout.json")
                        .read_text())["state_dict"]
    sizes = {768: C, 3 * 768: 3 * C, 4 * 768: 4 * C, 100: D, 27: K, 28 * 28 + 1: GRID ** 2 + 1}
    want = [(k, [sizes.get(n, n) for n in shape]) for k, shape in layout
            if not k.startswith("net.model.blocks.") or int(k.split(".")[3]) < DEPTH]
    got = [(k, list(v.shape)) for k, v in _state_dict().items()]
    assert got == want


def test_codes_equal_an_independent_vit_at_its_native_size(released):
    """The same weights in timm's VisionTransformer (another implementation of DINO's ViT,
    whose key names the released backbone shares) give the same features at 224 px, where no
    position resize is involved; the head on them gives the same codes."""
    from timm.models.vision_transformer import VisionTransformer

    sd = _state_dict()
    vit = VisionTransformer(img_size=224, patch_size=PATCH, embed_dim=C, depth=DEPTH,
                            num_heads=HEADS, num_classes=0, qkv_bias=True).double().eval()
    vit.load_state_dict({k[len("net.model."):]: v.double() for k, v in sd.items()
                         if k.startswith("net.model.")}, strict=True)
    images = _images(224, 224, n=2)
    with torch.no_grad():
        tokens = vit.forward_features((images.double() - MEAN) / STD)
    feats = tokens[:, 1:].transpose(1, 2).reshape(2, C, 224 // PATCH, 224 // PATCH)
    head = {k: v.double() for k, v in sd.items() if k.startswith("net.cluster")}
    code = F.conv2d(feats, head["net.cluster1.0.weight"], head["net.cluster1.0.bias"])
    mid = F.relu(F.conv2d(feats, head["net.cluster2.0.weight"], head["net.cluster2.0.bias"]))
    code = code + F.conv2d(mid, head["net.cluster2.2.weight"], head["net.cluster2.2.bias"])
    model = load_released(released)
    assert (model.backbone()(images).double() - feats).abs().max().item() < 1e-4
    assert (model.codes(images).double() - code).abs().max().item() < 1e-4


def test_timm_style_position_resize_would_not_match(released):
    """The check above can fail: resizing the grid to exactly 40×40 (timm) is off by far
    more than the tolerance at 320 px, so DINO's own resize is what makes it pass."""
    model = load_released(released)
    images = _images(320, 320)
    timm_like = reference_codes(_state_dict(), images, size_mode="exact")
    assert (model.codes(images).double() - timm_like).abs().max().item() > 1e-2


def test_config_probes_and_meta_come_from_the_file(released):
    model = load_released(released)
    assert model.meta["config"] == CONFIG
    sd = _state_dict()
    assert torch.equal(model.cluster_probe.clusters.detach(), sd["cluster_probe.clusters"])
    assert torch.equal(model.linear_probe.conv.weight.detach(), sd["linear_probe.weight"])
    assert torch.equal(model.linear_probe.conv.bias.detach(), sd["linear_probe.bias"])
    meta = model.meta
    assert (meta["n_classes"], meta["code_dim"], meta["extra_clusters"]) == (K, D, 0)
    assert (meta["patch_size"], meta["heads"], meta["depth"], meta["step"]) == (8, 2, 2, 3)
    assert meta["lightning_version"] == "2.0.1.post0" and meta["profile"]["dim"] == D
    assert not model.head.training and not model.backbone().training
    # the probes work on the codes as evaluation uses them (alpha 2, log-probabilities)
    code = model.codes(_images(64, 64, n=2))
    assert model.cluster_probe(code, alpha=2, log_probs=True).shape == (2, K, 8, 8)
    assert model.linear_probe(code).shape == (2, K, 8, 8)


def test_lightning_1x_layout_with_callback_classes_and_extra_clusters(tmp_path):
    path = write_released(tmp_path / "pl1.ckpt", lightning="1.4.9",
                          sd=_state_dict(seed=1, nonlinear=False, extra=2))
    model = load_released(path)
    assert model.head.nonlinear is None and model.meta["extra_clusters"] == 2
    assert model.cluster_probe.clusters.shape == (K + 2, D)
    images = _images(224, 224)
    ref = reference_codes(_state_dict(seed=1, nonlinear=False, extra=2), images)
    assert (model.codes(images).double() - ref).abs().max().item() < 1e-4


def test_nothing_in_the_file_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    save({"payload": Evil(marker), "state_dict": _state_dict()}, path)
    with pytest.raises(DepthGError, match="is not a released STEGO/DepthG"):  # os is blocked
        load_released(path)
    assert not marker.exists()


def test_plain_turns_stand_ins_into_values(tmp_path):
    from depthg_lib.released import read_lightning_file

    save({"state_dict": {}, "cfg": DictConfig({"a": 1, "b": [1, {"c": "x"}]})},
         tmp_path / "cfg.pt")
    cfg = read_lightning_file(tmp_path / "cfg.pt")["cfg"]
    assert plain(cfg) == {"a": 1, "b": [1, {"c": "x"}]}


@pytest.mark.parametrize("kind", ["missing", "garbage", "course", "backbone", "no_probe",
                                  "depth_arch"])
def test_refuses_what_is_not_a_released_checkpoint(tmp_path, kind):
    path = tmp_path / f"{kind}.ckpt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif kind == "course":  # a checkpoint of the course's own training
        torch.save({"format": 1, "head": {"linear.weight": torch.zeros(2, 2, 1, 1)}}, path)
    elif kind == "backbone":  # a DINO backbone file
        torch.save({"pos_embed": torch.zeros(1, 785, C)}, path)
    elif kind == "no_probe":
        sd = _state_dict()
        del sd["cluster_probe.clusters"]
        write_released(path, sd=sd)
    elif kind == "depth_arch":
        write_released(path, config={**CONFIG, "arch": "dino_depth"})
    match = "does not exist" if kind == "missing" else "is not a released STEGO/DepthG"
    with pytest.raises(DepthGError, match=match) as err:
        load_released(path)
    assert str(path) in str(err.value)


def test_is_released_checkpoint(released, tmp_path):
    assert is_released_checkpoint(released)
    other = tmp_path / "final.pt"
    torch.save({"format": 1, "head": {}}, other)
    assert not is_released_checkpoint(other)


def test_profile_fit_is_checked(released):
    model = load_released(released)
    with pytest.raises(DepthGError, match="does not fit profile cityscapes-vitb8"):
        check_fits_profile(model, "cityscapes-vitb8")


def test_plain_passes_values_through():
    assert plain({"a": [1, 2.5, None, "s"], 3: True}) == {"a": [1, 2.5, None, "s"], 3: True}


# --------------------------------------------------------------- the paper's numbers

def test_paper_numbers_are_cited_and_not_inherited():
    depthg = paper_numbers("cityscapes-vitb8")
    assert "2309.12378" in depthg["source"] and "Table 2" in depthg["source"]
    assert depthg["unsupervised"] == {"acc": 81.6, "miou": 23.1}
    assert depthg["linear"] == {"acc": None, "miou": None}
    stego = paper_numbers("stego-cocostuff27-vits8")
    assert "2203.08414" in stego["source"] and stego["crf"] is False
    assert stego["unsupervised"]["miou"] == 24.0 and stego["linear"]["miou"] == 38.4
    # the STEGO twin of cityscapes-vitb8 extends it but must carry STEGO's numbers, not DepthG's
    assert paper_numbers("stego-cityscapes-vitb8")["unsupervised"] == {"acc": 73.2, "miou": 21.0}
    assert paper_numbers("demo") is None


def test_paper_numbers_are_not_run_settings():
    from depthg_lib.config import load_profile

    values = dataclasses.asdict(load_profile("cityscapes-vitb8"))
    assert "paper" not in values and 81.6 not in values.values()


def test_bad_paper_block_is_one_clear_error(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("extends: demo\npaper:\n  source: X, Table 9\n  unsupervised: {miou: 123}\n")
    with pytest.raises(DepthGError, match=r"paper.unsupervised.miou must be a percentage"):
        paper_numbers(str(bad))
    bad.write_text("extends: demo\npaper:\n  unsupervised: {miou: 12}\n")
    with pytest.raises(DepthGError, match="with a source"):
        paper_numbers(str(bad))


def test_a_config_pickled_by_real_omegaconf():
    """tests/data/released/omegaconf-2.4.0-config.ckpt was written by torch.save with
    omegaconf 2.4.0 installed ({"state_dict": …, "hyper_parameters": {"n_classes": 27,
    "cfg": DictConfig}}, struct off, one key added afterwards, as the released my_app does)."""
    from depthg_lib.released import read_lightning_file

    ckpt = read_lightning_file(Path(__file__).parent / "data/released/omegaconf-2.4.0-config.ckpt")
    assert "omegaconf" not in sys.modules
    assert plain(ckpt["hyper_parameters"]) == {"n_classes": 27, "cfg": {
        "output_root": "../", "arch": "dino", "model_type": "vit_small", "dim": 70,
        "crop_types": ["five", None], "res": 224, "lr": 0.0005, "continuous": True,
        "nested": {"a": None, "m": "???", "i": "${res}"}, "full_name": "x"}}


def test_evaluation_scores_a_released_model_as_released(released):
    """The course's evaluation helpers take the imported model as they are: flip-averaged
    codes, upsampled bilinearly before the probes, cluster probe log-softmax(2·cos)."""
    from depthg_lib.evaluate import probe_log_probs

    model = load_released(released)
    images = _images(64, 64)
    cluster, linear = probe_log_probs(model, model.backbone(), images, (80, 80))
    sd = _state_dict()
    code = (reference_codes(sd, images) + reference_codes(sd, images.flip(3)).flip(3)) / 2
    code = F.interpolate(code, size=(80, 80), mode="bilinear", align_corners=False)
    cos = torch.einsum("bchw,kc->bkhw", F.normalize(code, dim=1),
                       F.normalize(sd["cluster_probe.clusters"].double(), dim=1))
    assert (cluster.double() - (2 * cos).log_softmax(1)).abs().max().item() < 1e-4
    logits = F.conv2d(code, sd["linear_probe.weight"].double(), sd["linear_probe.bias"].double())
    assert (linear.double() - logits.log_softmax(1)).abs().max().item() < 1e-4


def test_load_checkpoint_and_predict_take_a_released_file(released, tmp_path):
    """`checkpoint.load_checkpoint` imports a released file; `predict --checkpoint` segments."""
    from PIL import Image

    from depthg_lib.checkpoint import load_checkpoint
    from depthg_lib.predict import main as predict_main
    from depthg_lib.released import is_released

    model = load_checkpoint(released)
    assert is_released(model)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_images(40, 48)[0].mul(255).byte().permute(1, 2, 0).numpy()).save(
        photos / "a.png")
    assert predict_main([str(photos), "--out", str(tmp_path / "out"),
                         "--checkpoint", str(released)]) == 0
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.png"))
    assert any(name.startswith("a") for name in written), written
