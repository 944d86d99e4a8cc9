"""Atomic writes, stage records and robust image reading shared by every stage.

Every output is written to a temporary file beside it and renamed into place, so an interrupted
run never leaves a partial file. Each stage records its settings, and a digest of what it
consumed, in `<stage>.json` beside its outputs: a re-run with other settings or from changed
inputs is refused unless `force=True` (docs/method.md §0), so no output silently comes from
stale inputs. `stage_lock` lets one run at a time write a stage's outputs; `replaced_outputs`
lets a forced run replace a whole folder of them at once.
"""

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


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255  # bytes in one file name on the usual file systems


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
    """Yield a temporary path beside `path` (a dot name, hashed if `path`'s is near the file
    system's limit); rename it onto `path` only if the block succeeds."""
    path = Path(path)
    ensure_dir(path.parent)
    limit = _name_max(path.parent)
    if len(path.name.encode()) > limit:
        raise DepthGError(f"cannot write {path}: its file name is {len(path.name.encode())} "
                          f"bytes, more than the {limit} this file system allows; rename the "
                          "input or choose a shorter name")
    prefix = f".{path.name}."
    if len(prefix.encode()) + 8 + len(".tmp") + len(path.suffix.encode()) > limit:
        prefix = f".{hashlib.sha1(path.name.encode()).hexdigest()[:16]}."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as err:
        raise DepthGError(f"cannot write {path} ({err.strerror or err}); choose a folder you "
                          "can write to") from None
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
            raise DepthGError(f"cannot write {path} ({err.strerror or err})") from None
    finally:
        tmp.unlink(missing_ok=True)


def free_bytes(path: str | os.PathLike) -> int:
    """Free space on the disk that holds `path`, or would hold it (its nearest existing folder)."""
    there = Path(path).resolve()
    return shutil.disk_usage(next(p for p in (there, *there.parents) if p.exists())).free


class DiskRoom:
    """Stops a long stage before its disk fills up: once `PROBE` items are written, the bytes
    they added to `folder` are projected over the rest and compared with what is free there —
    one clear error naming the folder, instead of "No space left on device" part-way (the stage
    resumes). The folder's own growth is measured, not the disk's free space, which other
    programs writing to the same disk meanwhile would make look like the stage's."""

    PROBE = 20

    def __init__(self, folder: str | os.PathLike, items: int, what: str):
        self.folder, self.items, self.what, self.done = Path(folder), items, what, 0
        self.used = tree_bytes(self.folder)

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
    """The bytes of the files under `folder` (0 while it does not exist)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


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
    """Save an array as an image atomically. uint16 arrays become 16-bit PNGs (mode I;16)."""
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}.get(Path(path).suffix.lower())
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format=fmt, **save_kwargs)


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
    """Read any image (greyscale, RGBA, palette, 16-bit) as RGB uint8 (H, W, 3).

    `exif=True` turns a picture upright as its EXIF orientation says (a phone photo without
    labels); dataset images stay as stored, since their labels are too."""
    # stages that can leave a bad image out add their --skip-bad hint to the error
    with _opened(path, "image", if_bad="; replace or delete the file") as img:
        if exif:
            img = ImageOps.exif_transpose(img)
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


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label PNG as it is stored (uint8 or wider integer ids), naming the file on error."""
    with _opened(path, "label") as img:
        return np.asarray(img).copy()


def read_depth_png(path: str | os.PathLike,
                   remedy: str = "re-run the depth stage (python -m depthg_lib.depth)"
                   ) -> np.ndarray:
    """A stored depth map, one channel, as stored: uint16 (docs/method.md §2) or uint8 (the
    released code's maps). A wider PNG must hold values in 0..65535. Errors name the file and
    end with `remedy`, what the calling stage suggests."""
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
    """Yield `[load(x) for x in items[i:i + batch]]` batch by batch, the next batch loading in
    `workers` threads meanwhile (PIL and file reads release the GIL)."""
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


def _as_recorded(settings: dict) -> dict:
    """`settings` as they read back from their JSON record (tuples → lists, paths → str)."""
    return json.loads(json.dumps(settings, default=str))


# A stage's record `<stage>.json` holds its settings and, under INPUTS_KEY, one entry per thing
# it consumed, `{"what": words for messages, "digest": ..., "files": n}`, keyed `train/images`
# (one split's) or `dataset` (shared): a later stage digests only its split's part of it.

INPUTS_KEY = "inputs"
HASH_LIMIT = 64 << 20  # input sets up to this many bytes are hashed; larger ones use mtimes


def stamp_files(paths, root: str | os.PathLike | None = None, what: str = "",
                hash_limit: int = HASH_LIMIT) -> dict:
    """One digest of a set of input files: each one's name (relative to `root`), size and
    content hash — or, for a set over `hash_limit` bytes, its mtime (cheap, and still changes
    when a file is replaced in place). A missing file counts as such."""
    stats = []
    for p in map(Path, paths):
        try:
            st = p.stat()
            stats.append((p, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stats.append((p, -1, 0))
    stats.sort(key=lambda item: str(item[0]))
    by_content = sum(max(size, 0) for _, size, _ in stats) <= hash_limit
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
    return record is not None and record[0] != _as_recorded(settings)


def check_stage_settings(out_dir: str | os.PathLike, stage: str, settings: dict,
                         force: bool = False, inputs: dict | None = None,
                         command: str | None = None, write: bool = True) -> bool:
    """Record `settings` and `inputs` (entries of `stamp_files`, `record_digest`; only the keys
    given are compared) in `<out_dir>/<stage>.json`; refuse other settings or changed inputs
    unless `force`, quoting `command`. True when outputs there may be reused. With
    `write=False` a fresh or forced run leaves the old record, for a stage that swaps its new
    outputs in whole and then calls `write_stage_record`."""
    path = Path(out_dir) / f"{stage}.json"
    settings = _as_recorded(settings)
    if INPUTS_KEY in settings:
        raise ValueError(f"{INPUTS_KEY!r} is reserved for the inputs of a stage record")
    inputs = _as_recorded(inputs or {})
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
    changed = changed_inputs(old_inputs, inputs)
    if changed:
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
    """Write `<out_dir>/<stage>.json` (settings and inputs) as `check_stage_settings` does."""
    save_json(Path(out_dir) / f"{stage}.json", _record(settings, inputs))


def _record(settings: dict, inputs: dict | None) -> dict:
    """What a stage record holds: the settings, and the inputs under INPUTS_KEY if any."""
    settings, inputs = _as_recorded(settings), _as_recorded(inputs or {})
    return {**settings, INPUTS_KEY: inputs} if inputs else settings


@contextlib.contextmanager
def stage_lock(out_dir: str | os.PathLike, stage: str) -> Iterator[Path]:
    """Hold `<out_dir>/.<stage>.lock` (an OS lock: a killed run never leaves it held) while a
    stage writes there, so a second run stops at once instead of interleaving its files; a
    `replaced_outputs` swap cut short is put in order first."""
    finish_interrupted_swap(out_dir)
    folder = ensure_dir(out_dir)
    path = folder / f".{stage}.lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DepthGError(f"another {stage} run is writing to {folder} right now (it holds "
                          f"{path}); wait for it to finish, then run this command again") from None
    except OSError as err:
        raise DepthGError(f"cannot create the lock file {path} ({err.strerror or err}); choose "
                          "a folder you can write to") from None
    try:
        yield path
    finally:
        lock.release()


# A forced run replacing a folder of outputs file by file, if interrupted, would leave a mix and
# a record describing neither: it writes a new folder beside the old and swaps them by renames.


def _beside(folder: Path, tag: str) -> Path:
    """`.<name>.<tag>` next to `folder`: hidden, so no dataset reader lists it as images."""
    return folder.parent / f".{folder.name}.{tag}"


def finish_interrupted_swap(folder: str | os.PathLike) -> None:
    """Finish a `replaced_outputs` swap cut short: between its renames (`folder` → `.<name>.old`,
    new → `folder`) the old outputs go back; after them only the old copy is left to remove."""
    folder = Path(folder)
    old = _beside(folder, "old")
    if old.exists() and folder.exists():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        os.rename(old, folder)


@contextlib.contextmanager
def replaced_outputs(folder: str | os.PathLike, stage: str, settings: dict,
                     inputs: dict | None = None, keep=()) -> Iterator[Path]:
    """Yield `.<name>.new` beside `folder`, holding the new `<stage>.json`, for a forced run to
    write into; swap it in for `folder` when the block succeeds. Interrupted, `folder` stays
    whole and the same command continues in the new folder. `keep`: files of `folder` this run
    does not redo, hard-linked (or copied) over. Call it inside `stage_lock(folder, stage)`
    after `check_stage_settings(..., write=False)`."""
    folder = Path(folder)
    new, old = _beside(folder, "new"), _beside(folder, "old")
    wanted = _record(settings, inputs)
    if new.exists() and _record_or_none(new / f"{stage}.json") != wanted:
        shutil.rmtree(new)  # begun for other settings or inputs: of no use now
    for stray in new.rglob(".*.tmp*"):
        stray.unlink()  # the temporary file of a write that a kill cut short (atomic_path)
    ensure_dir(new)
    save_json(new / f"{stage}.json", wanted)  # what the folder is being made for
    for path in map(Path, keep):
        target = new / path.relative_to(folder)
        if path.is_file() and not target.exists():
            ensure_dir(target.parent)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)
    yield new
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.rename(folder, old)
    try:
        os.rename(new, folder)
    except OSError as err:
        raise DepthGError(f"cannot move the new outputs {new} into place at {folder} "
                          f"({err.strerror or err}); run the same command again") from None
    shutil.rmtree(old, ignore_errors=True)


def _record_or_none(path: Path) -> dict | None:
    try:
        return load_json(path) if path.is_file() else None
    except DepthGError:
        return None
