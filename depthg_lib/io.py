"""Atomic writes, stage records and robust image reading shared by every stage.

Nothing is lost: every output is written to a temporary file in the same folder and renamed
into place, so an interrupted run never leaves a partial file, and a re-run skips what exists.
Each stage records its settings in `<stage>.json` next to its outputs; a re-run with other
settings is refused unless `force=True` (SPEC §0).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DepthGError


def _default_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_file_mode()  # mkstemp makes 0600 files; outputs get the usual mode


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DepthGError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise DepthGError(f"{path} is not valid JSON ({err}); delete it and re-run the "
                          "stage") from None


def save_image(path: str | os.PathLike, array: np.ndarray, **save_kwargs: Any) -> None:
    """Save an array as an image atomically. uint16 arrays become 16-bit PNGs."""
    path = Path(path)
    if array.dtype == np.uint16:
        img = Image.fromarray(array)  # mode I;16
    else:
        img = Image.fromarray(array)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(path.suffix.lower(), None)
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **save_kwargs)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read any image (greyscale, RGBA, palette, 16-bit) as RGB uint8 (H, W, 3).

    A corrupt or truncated file raises a `DepthGError` naming it.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = arr.max() if arr.max() > 0 else 1.0
                arr = np.round(arr / top * 255).astype(np.uint8)
                return np.repeat(arr[..., None], 3, axis=2)
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DepthGError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DepthGError(
            f"cannot read image {path} ({type(err).__name__}: {err}); replace or delete the "
            "file, or pass --skip-bad to skip it") from None


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as it is stored (uint8 or wider integer ids), naming the file on error."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img).copy()
    except FileNotFoundError:
        raise DepthGError(f"label {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DepthGError(f"cannot read label {path} ({type(err).__name__}: {err})") from None


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_recorded(settings: dict) -> dict:
    """`settings` as they read back from their JSON record (tuples → lists, paths → str)."""
    return json.loads(json.dumps(settings, default=str))


def recorded_settings_differ(out_dir: str | os.PathLike, stage: str, settings: dict) -> bool:
    """True when `<out_dir>/<stage>.json` exists and records other settings than these."""
    record = Path(out_dir) / f"{stage}.json"
    return record.exists() and load_json(record) != _as_recorded(settings)


def check_stage_settings(out_dir: str | os.PathLike, stage: str, settings: dict,
                         force: bool = False) -> bool:
    """Record `settings` in `<out_dir>/<stage>.json`; refuse a re-run with other settings.

    Returns True when outputs already there were made with these same settings (so finished
    items may be skipped), False when the folder is fresh or `force` wiped the record.
    """
    record = Path(out_dir) / f"{stage}.json"
    settings = _as_recorded(settings)
    if record.exists() and not force:
        old = load_json(record)
        if old != settings:
            diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings)
                    if old.get(k) != settings.get(k)}
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise DepthGError(
                f"{record} was written with other settings ({changes}); re-run with --force "
                f"to replace the outputs in {out_dir}, or choose another output folder")
        return True
    save_json(record, settings)
    return False
