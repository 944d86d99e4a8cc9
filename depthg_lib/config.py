"""Profiles: one typed, validated configuration per run (docs/method.md §10), a YAML file in
`depthg_lib/profiles/` or anywhere, listing after `extends: <other>` only what differs. A bad
key, type or value is one `DepthGError` naming the file, the key and the nearest valid key."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DepthGError

PROFILE_DIR = Path(__file__).parent / "profiles"
REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def runs_root() -> Path:
    """Where executed notebooks and run outputs go: `runs/`, or `$DEPTHG_RUNS` if set."""
    return Path(os.environ.get("DEPTHG_RUNS") or REPO_ROOT / "runs")


def chapters(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered chapters (`NN_*.ipynb`) in order; appendices (`A1_*`) are not run."""
    return sorted(notebook_dir.glob("[0-9][0-9]_*.ipynb"))


DATASETS = ("synthscenes", "cocostuff27", "cityscapes", "potsdam", "directory")
FIDELITIES = ("released", "corrected")  # docs/method.md §13


def check_fidelity(fidelity: str) -> str:
    if fidelity not in FIDELITIES:
        raise DepthGError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")
    return fidelity


@dataclass(frozen=True)
class Profile:
    """Every setting of a run. Defaults are docs/method.md §10's shared defaults."""

    name: str = "custom"
    description: str = ""
    fidelity: str = "released"
    seed: int = 0

    # -- data (docs/method.md §1, §11) -------------------------------------------------------------
    dataset: str = "synthscenes"
    data_root: str = "data"  # relative paths are taken from the repository root
    dataset_dir: str = ""  # folder under data_root; default: the dataset name
    n_classes: int = 27
    synth_n_train: int = 0  # SynthScenes only: images to generate
    synth_n_val: int = 0
    synth_size: int = 128
    synth_seed: int = 0
    synth_camouflage: float = 0.0  # share of things wearing the ground's look (the study's knob)

    # -- depth (docs/method.md §2) ---------------------------------------------------------------
    depth_backend: str = "zoedepth"
    depth_model: str = ""  # model id or local directory; "" = the backend's default
    depth_batch: int = 8

    # -- five-crop and kNN (docs/method.md §3, §4) ----------------------------------------
    crop_ratio: float = 0.5
    knn_res: int = 392
    knn_k: int = 7  # num_neighbors: training draws a positive among columns 1..knn_k
    knn_store: int = 30  # columns stored (the crop itself included)
    knn_block: int = 4096

    # -- model (docs/method.md §5) -----------------------------------------------------------------
    backbone: str = "vit_small_patch8_224.dino"
    backbone_weights: str = ""  # local file; "" = the backbone's default location
    res: int = 224
    dim: int = 70
    dropout: bool = True
    nonlinear: bool = True
    extra_clusters: int = 0

    # -- losses (docs/method.md §6) ----------------------------------------------------------------
    pointwise: bool = True
    zero_clamp: bool = True
    stabilize: bool = False
    feature_dropout: float = 0.1  # the released loss applies its own Dropout2d to features
    neg_samples: int = 5
    use_depth: bool = True
    weight_intra: float = 0.58
    weight_inter: float = 0.36
    weight_neg: float = 0.70
    weight_depth: float = 0.19
    shift_intra: float = 0.07
    shift_inter: float = 0.025
    shift_neg: float = 0.761
    shift_depth: float = 0.03
    depth_decay_every: int = 250
    depth_decay_factor: float = 0.6

    # -- sampling (docs/method.md §7) --------------------------------------------------------------
    sampling: str = "fps"
    samples: int = 11  # S: an S×S grid of points per image
    fps_sample_decay: bool = True
    fps_sample_decay_every: int = 1000
    fps_sample_decay_factor: float = 0.9
    fps_min_samples: int = 5

    # -- training (docs/method.md §8) --------------------------------------------------------------
    steps: int = 7000
    batch_size: int = 32
    lr: float = 5e-4
    probe_lr: float = 5e-3
    val_every: int = 100
    val_images: int = 0  # 0 = the whole validation split
    checkpoint_every: int = 500
    num_workers: int = 2
    precompute_features: bool = False
    feature_cache_gb: float = 20.0  # disk budget for precomputed features

    # -- evaluation (docs/method.md §9) ------------------------------------------------------------
    eval_res: int = 320
    crf: bool = False
    ablation_seeds: int = 3
    ablation_steps: int = 0  # training steps of each ablation run; 0 = `steps`

    # -- the study (python -m depthg_lib.study): splits by SynthScenes seed -----------------
    tune_seed: int = 101  # every choice is made on this split (synth_n_val images)
    report_seed: int = 202  # touched only for the final tables
    study_n_report: int = 0  # report images; 0 = synth_n_val
    study_knob: list[float] = field(default_factory=lambda: [0.0])  # camouflage settings
    study_arms: list[str] = field(default_factory=list)  # [] = every arm of the factorial
    study_shift_offsets: list[float] = field(default_factory=lambda: [0.0])  # exactly one offset
    # the study's nuisance knob (depthg_lib.nuisance): strengths run at camouflage study_knob[0]
    study_nuisance: list[float] = field(default_factory=list)
    # schedules as a share of an ablation run (ablation.arm_profile); 0 = the *_every steps
    depth_decay_share: float = 0.0
    fps_sample_decay_share: float = 0.0

    source: str = field(default="", compare=False)  # not a setting: the file it was loaded from

    def replace(self, **changes) -> Profile:
        """A copy with some values changed, validated like a loaded profile."""
        where = self.source or self.name
        changes = {key: _validate(where, key, value) for key, value in changes.items()}
        new = dataclasses.replace(self, **changes)
        _check_combined(new, where)
        return new

    @property
    def weights(self) -> dict[str, float]:
        return {"intra": self.weight_intra, "inter": self.weight_inter,
                "neg": self.weight_neg, "depth": self.weight_depth}

    @property
    def shifts(self) -> dict[str, float]:
        return {k: getattr(self, f"shift_{k}") for k in ("intra", "inter", "neg", "depth")}

    @property
    def paths(self) -> Paths:
        return Paths(self)


class Paths:
    """Where each stage reads and writes for a profile (docs/method.md §0, §11)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.data_root = REPO_ROOT / Path(profile.data_root).expanduser()  # as is if absolute
        self.dataset_dir = self.data_root / (profile.dataset_dir or profile.dataset)
        # cropped/<dataset>_five_crop_<ratio>/{img,label,depth}/<split>/
        self.crop_dir = (self.data_root / "cropped"
                         / f"{self.dataset_dir.name}_five_crop_{profile.crop_ratio}")
        self.run_dir = runs_root() / profile.name
        self.train_dir, self.eval_dir = self.run_dir / "train", self.run_dir / "eval"

    def knn_file(self, split: str = "train") -> Path:
        """`nns/nns_<model>_<dataset>_<split>_five_<res>.npz` (docs/method.md §11)."""
        model = self.profile.backbone.replace("/", "_")
        name = f"nns_{model}_{self.dataset_dir.name}_{split}_five_{self.profile.knn_res}.npz"
        return self.data_root / "nns" / name


_FIELDS = typing.get_type_hints(Profile)  # name → type of each field, evaluated once (~1 ms)
_CHOICES = {"dataset": DATASETS, "fidelity": FIDELITIES, "sampling": ("fps", "random"),
            "depth_backend": ("synth", "gt", "zoedepth", "depth_anything")}
_POSITIVE = {"synth_size", "depth_batch", "knn_res", "knn_k", "knn_store", "knn_block", "res",
             "dim", "samples", "steps", "batch_size", "val_every", "checkpoint_every",
             "eval_res", "n_classes", "fps_min_samples", "depth_decay_every",
             "fps_sample_decay_every", "ablation_seeds"}
_NON_NEGATIVE = {"synth_n_train", "synth_n_val", "synth_seed", "seed", "extra_clusters",
                 "neg_samples", "num_workers", "val_images", "ablation_steps", "lr", "probe_lr",
                 "feature_cache_gb", "tune_seed", "report_seed", "study_n_report"
                 } | {k for k in _FIELDS if k.startswith("weight_")}
_UNIT_INTERVAL = {"crop_ratio", "feature_dropout", "depth_decay_factor",
                  "fps_sample_decay_factor", "synth_camouflage", "depth_decay_share",
                  "fps_sample_decay_share"}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def profile_arg(profile: Profile) -> str:
    """What to pass to --profile to get this profile back: its name if shipped, else its file."""
    if not profile.source or Path(profile.source).parent.resolve() == PROFILE_DIR.resolve():
        return profile.name
    return profile.source


def positive_int(text: str) -> int:
    """argparse `type=` for counts such as --max-images: an integer ≥ 1."""
    if not text.strip().isdecimal() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return int(text)


def _profile_file(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise DepthGError(f"profile file {path} does not exist")
        return path
    path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        names = available_profiles()
        near = difflib.get_close_matches(str(name_or_path), names, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise DepthGError(f"unknown profile {str(name_or_path)!r}.{hint} "
                          f"Valid profiles: {', '.join(names)}")
    return path


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise DepthGError(f"profile {path} extends itself (via {' -> '.join(map(str, seen))})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DepthGError(f"profile {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise DepthGError(f"profile {path} must be a mapping of key: value")
    parent = raw.pop("extends", None)
    raw.pop("paper", None)  # the paper's reported numbers: read by depthg_lib.released only
    values = _read_yaml(_profile_file(parent), seen + (path,)) if parent else {}
    for key in raw:
        _check_key(path, key)  # here, to name the file that holds it
    return values | raw


def _check_key(path, key) -> None:
    if key not in _FIELDS or key == "source":
        near = difflib.get_close_matches(str(key), [k for k in _FIELDS if k != "source"], n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise DepthGError(f"profile {path}: unknown key {key!r}{hint}")


def _validate(path, key, value):
    """`value` if right for `key` in type and range (an int where a float is expected: as float)."""
    _check_key(path, key)
    hint = _FIELDS[key]
    expected = hint if isinstance(hint, type) else typing.get_origin(hint)  # list[float]: list
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is int and isinstance(value, bool) or not isinstance(value, expected):
        raise DepthGError(f"profile {path}: {key} must be {getattr(expected, '__name__', expected)}"
                          f", found {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):  # YAML's .nan / .inf
        raise DepthGError(f"profile {path}: {key} must be a finite number, found {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise DepthGError(f"profile {path}: {key} must be one of {', '.join(_CHOICES[key])},"
                          f" found {value!r}")
    if key in _POSITIVE and value <= 0:
        raise DepthGError(f"profile {path}: {key} must be > 0, found {value!r}")
    if key in _NON_NEGATIVE and value < 0:
        raise DepthGError(f"profile {path}: {key} must be >= 0, found {value!r}")
    if key in _UNIT_INTERVAL and not 0 <= value <= 1:
        raise DepthGError(f"profile {path}: {key} must be in [0, 1], found {value!r}")
    return value


def _check_combined(profile: Profile, path) -> None:
    """The rules between settings (each value alone was checked by `_validate` on its way in)."""
    if profile.fps_min_samples > profile.samples:
        raise DepthGError(f"profile {path}: fps_min_samples ({profile.fps_min_samples}) must "
                          f"not exceed samples ({profile.samples})")
    if profile.knn_k >= profile.knn_store:
        raise DepthGError(f"profile {path}: knn_k ({profile.knn_k}) must be smaller than "
                          f"knn_store ({profile.knn_store}), which counts the crop itself")
    if profile.dataset == "synthscenes" and profile.synth_n_train <= 0:
        raise DepthGError(f"profile {path}: a synthscenes profile needs synth_n_train > 0")
    if not all(isinstance(k, int | float) and 0 <= k <= 1 for k in profile.study_knob):
        raise DepthGError(f"profile {path}: study_knob must list numbers in [0, 1], found "
                          f"{profile.study_knob!r}")
    if len({profile.synth_seed, profile.tune_seed, profile.report_seed}) < 3:
        raise DepthGError(f"profile {path}: synth_seed, tune_seed and report_seed must be three "
                          "different seeds (train, tune and report splits must be disjoint)")
    if profile.depth_backend == "gt" and profile.dataset != "synthscenes":
        raise DepthGError(f"profile {path}: depth_backend 'gt' exists only for synthscenes")


def _own_name(path: Path, name: str) -> str:
    """`name`, or `<name>-<8 hex>` for a file elsewhere named like a shipped profile (own run)."""
    shipped = PROFILE_DIR / f"{name}.yaml"
    if not shipped.exists() or path.resolve() == shipped.resolve():
        return name
    return f"{name}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"


def shipped_name(profile: Profile) -> str:
    """The name before `_own_name`'s suffix: an edited copy is still that profile when released."""
    head, _, _ = profile.name.rpartition("-")
    if head and profile.source and _own_name(Path(profile.source), head) == profile.name:
        return head
    return profile.name


def load_profile(name_or_path: str | os.PathLike | Profile, **overrides) -> Profile:
    """Load and validate a profile by name (`test`, `demo`, ...) or by YAML path."""
    if isinstance(name_or_path, Profile):
        return name_or_path.replace(**overrides) if overrides else name_or_path
    path = _profile_file(name_or_path)
    values = _read_yaml(path)
    values["name"] = _own_name(path, values.get("name", path.stem))
    return Profile(source=str(path)).replace(**values | overrides)
