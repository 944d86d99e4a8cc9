"""Training checkpoints (one `weights_only`-loadable dict): what `train` writes, and the model
`evaluate` and `predict` load back. `last.pt` replaces the one before only once whole (kept as
`previous.pt`), so `read_latest` always finds an intact one."""

from __future__ import annotations

import dataclasses
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from .config import REPO_ROOT, Profile, load_profile, profile_arg
from .errors import DepthGError
from .io import atomic_path
from .models import DepthGModel, TrainedModel, profile_weights_identity, weights_identity
from .released import check_fits_profile, is_released_checkpoint, load_released

CHECKPOINT_FORMAT = "depthg-checkpoint-1"
_STATE_KEYS = ("head", "cluster_probe", "linear_probe", "optimizers", "rng")  # not metadata


def rng_state() -> dict:
    """Global RNG states, weights_only-loadable (plain lists and tensors)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def portable_profile(profile: Profile) -> dict:
    """The profile with its source relative to the repository (no folder of this machine)."""
    values = dataclasses.asdict(profile)
    source = Path(values.get("source") or "")
    if source.is_absolute() and source.resolve().is_relative_to(REPO_ROOT):
        values["source"] = source.resolve().relative_to(REPO_ROOT).as_posix()
    return values


def save_checkpoint(path: Path, trainer_state: dict, profile: Profile, step: int, seed: int,
                    backbone) -> None:
    """Write the trainer's state (`Trainer.state_dict()`) and what it was trained with."""
    state = {"format": CHECKPOINT_FORMAT, "profile": portable_profile(profile), "step": step,
             "seed": seed, "backbone": profile.backbone, "backbone_dim": backbone.dim,
             "patch_size": backbone.patch_size, "code_dim": profile.dim,
             "n_classes": profile.n_classes, "extra_clusters": profile.extra_clusters,
             "backbone_weights_identity": profile_weights_identity(profile),
             **trainer_state, "rng": rng_state()}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():  # the one it replaces stays whole until the new one is complete
            os.replace(path, previous_path(path))


def previous_path(path: str | os.PathLike) -> Path:
    return Path(path).with_stem("previous")


def read_latest(path: str | os.PathLike, device="cpu") -> tuple[dict, Path]:
    """`last.pt` at `path` and its path, else (with a note) the intact one beside it, most steps."""
    path = Path(path)
    try:
        return read_checkpoint(path, device), path
    except DepthGError as err:
        first = err
    found, damaged = [], []
    for other in (previous_path(path), path.with_stem("final")):
        try:
            found.append((read_checkpoint(other, device), other))
        except DepthGError:  # missing or damaged
            if other.exists():
                damaged.append(other.name)
    if not found:
        if not damaged:
            raise first
        raise DepthGError(f"no intact checkpoint in {path.parent}: {path.name} and "
                          f"{', '.join(damaged)} are truncated or damaged; start the run over "
                          "with `python -m depthg_lib.train --profile <profile> --force` (with "
                          "the same --out, if you gave one)")
    state, source = max(found, key=lambda item: int(item[0].get("step", -1)))
    what = "is missing" if not path.exists() else "is truncated or damaged"
    print(f"note: {path} {what}; continuing from {source.name} beside it (step "
          f"{state.get('step')})", file=sys.stderr)
    return state, source


def read_checkpoint(path: str | os.PathLike, device="cpu") -> dict:
    """The raw checkpoint dict; one clear error for a missing, damaged or foreign file."""
    path = Path(path)
    if not path.exists():
        raise DepthGError(f"checkpoint {path} does not exist; train one with "
                          "`python -m depthg_lib.train --profile <profile>`")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is one clear error
        # torch's own text is a paragraph of advice for other cases: its first sentence
        detail = str(err).split(". ")[0].splitlines()[0] if str(err) else ""
        remedy = "replace it, or train again with `python -m depthg_lib.train --profile <profile>`"
        if path.parent.name == "checkpoints" and path.stem in ("last", "previous", "final"):
            siblings = sorted(p.name for p in path.parent.glob("*" + path.suffix) if p != path)
            if siblings:  # resuming a run rewrites its own files from an intact one
                remedy = (f"{', '.join(siblings)} beside it may be intact: "
                          "`python -m depthg_lib.train --profile <profile> --resume` (with the "
                          "run's --out, if it had one) continues from them and writes it again")
        raise DepthGError(f"cannot read checkpoint {path}: the file is truncated or damaged "
                          f"({type(err).__name__}: {detail}); {remedy}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise DepthGError(f"{path} is not a DepthG checkpoint (format {found!r}, expected "
                          f"{CHECKPOINT_FORMAT!r})")
    return state


def check_compatible(state: dict, profile: Profile, path: Path) -> None:
    """Refuse a checkpoint made for another backbone, code size or number of classes."""
    want = {"backbone": profile.backbone, "code_dim": profile.dim,
            "n_classes": profile.n_classes, "extra_clusters": profile.extra_clusters}
    got = {k: state.get(k, 0 if k == "extra_clusters" else None) for k in want}
    if got != want:
        diff = ", ".join(f"{k} {got[k]!r} vs {want[k]!r}" for k in want if got[k] != want[k])
        raise DepthGError(
            f"checkpoint {path} was trained for profile {state['profile'].get('name')!r} and "
            f"does not fit profile {profile.name!r} ({diff}); evaluate it with its own profile "
            f"or train one: python -m depthg_lib.train --profile {profile_arg(profile)}")


def load_checkpoint(path: str | os.PathLike, profile: Profile | str | None = None,
                    device: str | torch.device = "cpu") -> TrainedModel:
    """Load a training checkpoint (or import a released one, docs/reproduction.md §6); with
    `profile`, refuse one made for another backbone or size."""
    path = Path(path)
    device = torch.device(device)
    if is_released_checkpoint(path):
        model = load_released(path, device=device)
        if profile is not None:
            check_fits_profile(model, profile)
        return model
    state = read_checkpoint(path, device)
    if profile is not None:
        check_compatible(state, load_profile(profile), path)
    saved = state["profile"]
    trained_on = state.get("backbone_weights_identity")
    if trained_on and not saved.get("backbone_weights"):  # the default weights of the name
        now = weights_identity(state["backbone"], None)
        if now and now != trained_on:
            raise DepthGError(
                f"checkpoint {path} was trained on other {state['backbone']} weights "
                f"({trained_on}) than the ones installed now ({now}); train it again: "
                f"python -m depthg_lib.train --profile {saved.get('name', 'PROFILE')} --force")
    model = DepthGModel(state["backbone_dim"], state["code_dim"], state["n_classes"],
                        state.get("extra_clusters", 0), saved.get("dropout", True),
                        saved.get("nonlinear", True))
    for part in ("head", "cluster_probe", "linear_probe"):
        getattr(model, part).load_state_dict(state[part])
    model.to(device).eval()
    meta = {k: v for k, v in state.items() if k not in _STATE_KEYS} | {"path": str(path)}
    return TrainedModel(model.head, model.cluster_probe, model.linear_probe, state["backbone"],
                        meta, device)
