"""Atomic writes, stage records and robust image reading shared by every stage: each stage
records its settings and a digest of what it consumed in `<stage>.json`, and a re-run with other
settings or from changed inputs is refused unless `force=True` (docs/method.md §0)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DepthGError

_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # mkstemp makes 0600 files; outputs get the usual mode


def ensure_dir(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create `folder` (and parents); a file in the way or no permission is one DepthGError."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise DepthGError(f"cannot use {folder} as {what}: a file of that name (or of one of "
                          "its parents) is in the way; move it or choose another folder") from None
    except OSError as err:
        raise DepthGError(f"cannot create {what} {folder} ({err.strerror or err}); choose a "
                          "folder you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DepthGError(f"cannot write into {what} {folder} (permission denied); choose a "
                          "folder you can write to")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary (dot) path beside `path`, renamed onto it only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    size = len(path.name.encode())
    prefix = f".{path.name}."
    if size + 16 + len(path.suffix) > 255:  # near the usual limit of a file name
        prefix = f".{hashlib.sha1(path.name.encode()).hexdigest()[:16]}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as err:
            if err.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise DepthGError(f"cannot write {path}: a folder of that name is in the way; "
                                  "move it or choose another output") from None
            if err.errno == errno.ENAMETOOLONG:
                raise DepthGError(f"cannot write {path}: its file name is {size} bytes, more "
                                  "than this file system allows; choose a shorter name") from None
            raise DepthGError(f"cannot write {path} ({err.strerror or err})") from None
    finally:
        tmp.unlink(missing_ok=True)


def free_bytes(path: str | os.PathLike) -> int:
    """Free space on the disk that holds `path`, or would hold it (its nearest existing folder)."""
    there = Path(path).resolve()
    return shutil.disk_usage(next(p for p in (there, *there.parents) if p.exists())).free


class DiskRoom:
    """Stops a long stage before its disk fills up: what the first `PROBE` items added to `folder`
    (not the disk's free space: other programs change it), projected over the rest, must fit."""

    PROBE = 20

    def __init__(self, folder: str | os.PathLike, items: int, what: str):
        self.folder, self.items, self.what, self.done = Path(folder), items, what, 0
        self.used = tree_bytes(self.folder) if items > self.PROBE else 0  # else never judged

    def wrote(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if not before < self.PROBE <= self.done:
            return
        free = free_bytes(self.folder)
        need = (tree_bytes(self.folder) - self.used) / self.done * (self.items - self.done)
        if need > free:
            raise DepthGError(
                f"{self.folder}: the remaining {self.items - self.done:,} {self.what} need about "
                f"{need / 1e9:.1f} GB and {free / 1e9:.1f} GB is free there; make room (or point "
                "data_root at a bigger disk), then run the same command again: what is written "
                "is kept")


def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def save_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


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
    """Save an array as an image atomically, in its suffix's format (uint16: a 16-bit PNG)."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, **save_kwargs)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


@contextlib.contextmanager
def _opened(path: str | os.PathLike, what: str, if_missing: str = "", if_bad: str = ""):
    """The loaded image at `path`; missing or unreadable, one DepthGError naming it."""
    try:
        with Image.open(path) as img:
            img.load()
            yield img
    except FileNotFoundError:
        raise DepthGError(f"{what} {path} does not exist{if_missing}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DepthGError(f"cannot read {what} {path} ({type(err).__name__}: {err}){if_bad}"
                          ) from None


def read_rgb(path: str | os.PathLike, exif: bool = False) -> np.ndarray:
    """Read any image (greyscale, RGBA, palette, 16-bit) as RGB uint8 (H, W, 3); `exif=True`
    turns an unlabelled photo upright (dataset images stay as stored, as their labels are)."""
    with _opened(path, "image", if_bad="; replace or delete the file") as img:
        if exif:
            img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            top = arr.max() if arr.max() > 0 else 1.0
            arr = np.round(arr / top * 255).astype(np.uint8)
            return np.repeat(arr[..., None], 3, axis=2)
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as it is stored (uint8 or wider integer ids), naming the file on error."""
    with _opened(path, "label") as img:
        return np.asarray(img).copy()


def read_depth_png(path: str | os.PathLike,
                   remedy: str = "re-run the depth stage (python -m depthg_lib.depth)"
                   ) -> np.ndarray:
    """A stored depth map, one channel: uint16 (docs/method.md §2) or the released code's uint8."""
    with _opened(path, "depth map", f"; {remedy}", f"; delete it and {remedy}") as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[..., 0]  # an RGB(A) depth PNG: its channels are equal
    if arr.dtype not in (np.uint8, np.uint16):
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DepthGError(f"depth map {path} holds values outside 0..65535; {remedy}")
        arr = arr.astype(np.uint16)
    return arr


def prefetched(load: Callable, items: Sequence, batch: int, workers: int) -> Iterator[list]:
    """`load` of each batch of `items`, the next batch loading in threads meanwhile (no GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        def submit(start):
            return [pool.submit(load, x) for x in items[start:start + batch]]

        pending = submit(0)
        for start in range(0, len(items), batch):
            current, pending = pending, submit(start + batch)
            yield [f.result() for f in current]


def json_digest(obj, length: int = 16) -> str:
    """A short, stable name for a description: its sha256 as JSON with sorted keys."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def as_recorded(settings: dict) -> dict:
    """`settings` as they read back from their JSON record (tuples → lists, paths → str)."""
    return json.loads(json.dumps(settings, default=str))


# A stage record holds its settings and, under INPUTS_KEY, `{"what", "digest", "files"}` per
# input, keyed `train/images` (one split's) or `dataset` (shared).

INPUTS_KEY = "inputs"
HASH_LIMIT = 64 << 20  # input sets up to this many bytes are hashed; larger ones use mtimes


def stamp_files(paths, root: str | os.PathLike | None = None, what: str = "") -> dict:
    """One digest of a set of input files: each one's name (relative to `root`), size and content
    hash — or, over HASH_LIMIT bytes in all, mtime (cheap, and changes when a file is replaced)."""
    stats = []
    for p in map(Path, paths):
        try:
            st = p.stat()
            stats.append((p, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stats.append((p, -1, 0))
    stats.sort(key=lambda item: str(item[0]))
    by_content = sum(max(size, 0) for _, size, _ in stats) <= HASH_LIMIT
    digest = hashlib.sha256(b"content\n" if by_content else b"mtime\n")
    for p, size, mtime in stats:
        name = p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) \
            else p.as_posix()
        mark = "missing" if size < 0 else sha256_file(p) if by_content else str(mtime)
        digest.update(f"{name}\t{size}\t{mark}\n".encode())
    return {"what": what, "files": sum(1 for _, size, _ in stats if size >= 0),
            "digest": digest.hexdigest()[:32]}


def _read_record(path: Path) -> tuple[dict, dict] | None:
    """(settings, inputs) of the stage record at `path`; None when there is none."""
    if not path.exists():
        return None
    settings = load_json(path)
    inputs = settings.pop(INPUTS_KEY, None)
    return settings, inputs if isinstance(inputs, dict) else {}


def record_digest(path: str | os.PathLike, split: str | None = None, what: str = "") -> dict:
    """Digest of a stage record (settings + inputs; with `split`, only the inputs shared or of
    that split), as an input entry of the next stage; its digest is None without a record."""
    what = what or f"the record {path}"
    record = _read_record(Path(path))
    if record is None:
        return {"what": what, "digest": None}
    settings, inputs = record
    inputs = {k: v.get("digest") if isinstance(v, dict) else v for k, v in inputs.items()
              if split is None or "/" not in k or k.startswith(f"{split}/")}
    return {"what": what, "digest": json_digest({"settings": settings, "inputs": inputs}, 32)}


def recorded_inputs(out_dir: str | os.PathLike, stage: str) -> dict:
    """The input entries `<out_dir>/<stage>.json` holds ({} when none)."""
    record = _read_record(Path(out_dir) / f"{stage}.json")
    return record[1] if record else {}


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Words for each input of `new` whose digest differs from the one `old` recorded."""
    changed = []
    for key, entry in sorted(new.items()):
        before = old.get(key)
        if not isinstance(before, dict) or before.get("digest") == entry.get("digest"):
            continue
        what = entry.get("what") or key
        a, b = before.get("files"), entry.get("files")
        if a is not None and b is not None and a != b:
            what += f" ({a} files then, {b} now)"
        elif before.get("digest") is None or entry.get("digest") is None:
            what += " (absent then)" if before.get("digest") is None else " (absent now)"
        changed.append(what)
    return changed


def recorded_settings_differ(out_dir: str | os.PathLike, stage: str, settings: dict) -> bool:
    """True when `<out_dir>/<stage>.json` exists and records other settings than these."""
    record = _read_record(Path(out_dir) / f"{stage}.json")
    return record is not None and record[0] != as_recorded(settings)


def check_stage_settings(out_dir: str | os.PathLike, stage: str, settings: dict,
                         force: bool = False, inputs: dict | None = None,
                         command: str | None = None, write: bool = True) -> bool:
    """Record `settings` and `inputs` (only the keys given are compared) in `<stage>.json`,
    refusing other settings or changed inputs unless `force`; True when outputs there may be
    reused. `write=False` leaves writing a new record (`write_stage_record`) to the caller."""
    path = Path(out_dir) / f"{stage}.json"
    settings, inputs = as_recorded(settings), as_recorded(inputs or {})
    record = None if force else _read_record(path)
    if record is None:
        if write:
            write_stage_record(out_dir, stage, settings, inputs)
        return False
    old, old_inputs = record
    problems = []
    if old != settings:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}"
                            for k in sorted(set(old) | set(settings))
                            if old.get(k) != settings.get(k))
        problems.append(f"was written with other settings ({changes})")
    if changed := changed_inputs(old_inputs, inputs):
        problems.append("was made from inputs that changed since: " + "; ".join(changed))
    if problems:
        fix = (f"redo the stage with `{command} --force`" if command else
               f"re-run with --force to replace the outputs in {out_dir}, or choose "
               "another output folder")
        raise DepthGError(f"{path} {' and '.join(problems)}; {fix}")
    if {**old_inputs, **inputs} != old_inputs:  # a record without inputs, or a new split
        save_json(path, {**settings, INPUTS_KEY: {**old_inputs, **inputs}})
    return True


def write_stage_record(out_dir: str | os.PathLike, stage: str, settings: dict,
                       inputs: dict | None = None) -> None:
    """Write `<out_dir>/<stage>.json`: the settings, and the inputs under INPUTS_KEY if any."""
    settings, inputs = as_recorded(settings), as_recorded(inputs or {})
    save_json(Path(out_dir) / f"{stage}.json", {**settings, INPUTS_KEY: inputs} if inputs
              else settings)


@contextlib.contextmanager
def stage_lock(out_dir: str | os.PathLike, stage: str) -> Iterator[Path]:
    """Hold `<out_dir>/.<stage>.lock` (an OS lock, freed if killed): a second run stops at once."""
    folder = ensure_dir(out_dir)
    path = folder / f".{stage}.lock"
    try:
        held = FileLock(path, timeout=0).acquire()
    except Timeout:  # (ensure_dir has made sure the folder takes the lock file)
        raise DepthGError(f"another {stage} run is writing to {folder} right now (it holds "
                          f"{path}); wait for it to finish, then run this command again") from None
    with held:  # released when the block ends, however it ends
        yield path
