"""Atomic writes, stage records and robust image reading shared by every stage.

Nothing is lost: every output is written to a temporary file in the same folder and renamed
into place, so an interrupted run never leaves a partial file, and a re-run skips what exists.
Each stage records its settings in `<stage>.json` next to its outputs, together with a digest
of what it consumed (the upstream stage's record, the input files): a re-run with other
settings or from changed inputs is refused unless `force=True` (docs/method.md §0), so no
output ever silently comes from stale inputs. `stage_lock` lets one run at a time write a
stage's outputs; `replaced_outputs` lets a forced run replace a whole folder of them at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
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


_NAME_MAX = 255  # bytes in one file name on the usual file systems


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return _NAME_MAX


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
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name starts with a dot and fits in one file name even when `path`'s own
    name is nearly as long as the file system allows (then it is a short hash of it).
    """
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


def read_rgb(path: str | os.PathLike, exif: bool = False) -> np.ndarray:
    """Read any image (greyscale, RGBA, palette, 16-bit) as RGB uint8 (H, W, 3).

    `exif=True` turns the picture upright as its EXIF orientation says (a phone photo), for
    images without labels; dataset images stay as stored, since their labels are too.
    A corrupt or truncated file raises a `DepthGError` naming it.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if exif:
                from PIL import ImageOps

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
    except FileNotFoundError:
        raise DepthGError(f"image {path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DepthGError(
            f"cannot read image {path} ({type(err).__name__}: {err}); replace or delete the "
            "file") from None  # stages that can leave it out add their --skip-bad hint


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


def read_depth_png(path: str | os.PathLike,
                   remedy: str = "re-run the depth stage (python -m depthg_lib.depth)"
                   ) -> np.ndarray:
    """A stored depth map as it is stored: uint16 (16-bit PNG, docs/method.md §2) or uint8 (the
    released code's 8-bit maps), one channel. A wider PNG is accepted if its values fit
    0..65535, else it was not written by the depth stage: an error. Errors name the file and
    end with `remedy` (what the calling stage suggests)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except FileNotFoundError:
        raise DepthGError(f"depth map {path} does not exist; {remedy}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DepthGError(f"cannot read depth map {path} ({type(err).__name__}: {err}); delete "
                          f"it and {remedy}") from None
    if arr.ndim == 3:
        arr = arr[..., 0]  # an RGB(A) depth PNG: its channels are equal
    if arr.dtype not in (np.uint8, np.uint16):
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DepthGError(f"depth map {path} holds values outside 0..65535; {remedy}")
        arr = arr.astype(np.uint16)
    return arr


def json_digest(obj, length: int = 16) -> str:
    """The first `length` hex digits of the sha256 of `obj` as JSON with sorted keys (values
    that JSON lacks written with str): a short, stable name for a description."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _as_recorded(settings: dict) -> dict:
    """`settings` as they read back from their JSON record (tuples → lists, paths → str)."""
    return json.loads(json.dumps(settings, default=str))


# ------------------------------------------------------------------------------ provenance
#
# A stage's record `<stage>.json` holds its settings and, under INPUTS_KEY, one entry per thing
# it consumed: `{"what": words for messages, "digest": ..., "files": n}`. Keys look like
# `train/images` (split-specific) or `dataset` (shared), so a downstream stage can digest just
# the part of an upstream record that its split depends on (`record_digest(path, split)`).

INPUTS_KEY = "inputs"
HASH_LIMIT = 64 << 20  # input sets up to this many bytes are hashed; larger ones use mtimes


def stamp_files(paths, root: str | os.PathLike | None = None, what: str = "",
                hash_limit: int = HASH_LIMIT) -> dict:
    """One digest of a set of input files: each file's name (relative to `root`), size, and
    content hash — or, when the set is larger than `hash_limit` bytes, its mtime (cheap, and
    still changes when a file is replaced in place). A missing file counts as such."""
    root = Path(root) if root is not None else None
    stats = []
    for p in paths:
        p = Path(p)
        try:
            st = p.stat()
            stats.append((p, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            stats.append((p, -1, 0))
    stats.sort(key=lambda item: str(item[0]))
    total = sum(max(size, 0) for _, size, _ in stats)
    by_content = total <= hash_limit
    digest = hashlib.sha256(b"content\n" if by_content else b"mtime\n")
    for p, size, mtime in stats:
        name = p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) \
            else p.as_posix()
        mark = "missing" if size < 0 else sha256_file(p) if by_content else str(mtime)
        digest.update(f"{name}\t{size}\t{mark}\n".encode())
    return {"what": what, "files": sum(1 for _, size, _ in stats if size >= 0),
            "digest": digest.hexdigest()[:32]}


def record_digest(path: str | os.PathLike, split: str | None = None, what: str = "") -> dict:
    """Digest of a stage record (settings + inputs; with `split`, only the inputs that are
    shared or belong to that split), as an input entry of the next stage. No record → None."""
    path = Path(path)
    what = what or f"the record {path}"
    if not path.exists():
        return {"what": what, "digest": None}
    record = load_json(path)
    inputs = record.pop(INPUTS_KEY, None) or {}
    if split is not None:
        inputs = {k: v for k, v in inputs.items() if "/" not in k or k.startswith(f"{split}/")}
    inputs = {k: v.get("digest") if isinstance(v, dict) else v for k, v in inputs.items()}
    return {"what": what, "digest": json_digest({"settings": record, "inputs": inputs}, 32)}


def recorded_inputs(out_dir: str | os.PathLike, stage: str) -> dict:
    """The input entries `<out_dir>/<stage>.json` holds ({} when none)."""
    record = Path(out_dir) / f"{stage}.json"
    if not record.exists():
        return {}
    inputs = load_json(record).get(INPUTS_KEY)
    return inputs if isinstance(inputs, dict) else {}


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
    record = Path(out_dir) / f"{stage}.json"
    if not record.exists():
        return False
    old = load_json(record)
    old.pop(INPUTS_KEY, None)
    return old != _as_recorded(settings)


def check_stage_settings(out_dir: str | os.PathLike, stage: str, settings: dict,
                         force: bool = False, inputs: dict | None = None,
                         command: str | None = None, write: bool = True) -> bool:
    """Record `settings` (and `inputs`) in `<out_dir>/<stage>.json`; refuse a re-run with other
    settings, or from inputs that changed since, unless `force`.

    `inputs` maps a key (`train/images`, `depth`, ...) to an entry of `stamp_files` or
    `record_digest`; only the keys given are compared (a stage run on one split leaves the
    other split's entries alone), new keys are added. `command` is the stage's command line
    without `--force`, quoted in the refusal. Returns True when outputs already there were
    made with these same settings from these same inputs (finished items may be skipped),
    False when the folder is fresh or `force` replaced the record. With `write=False` a fresh
    or forced run leaves the old record in place: a stage that writes its new outputs beside
    the old and swaps them in calls `write_stage_record` after the swap, so an interruption
    never leaves a record that describes outputs not yet there.
    """
    record = Path(out_dir) / f"{stage}.json"
    settings = _as_recorded(settings)
    if INPUTS_KEY in settings:
        raise ValueError(f"{INPUTS_KEY!r} is reserved for the inputs of a stage record")
    inputs = _as_recorded(inputs or {})
    if record.exists() and not force:
        old = load_json(record)
        old_inputs = old.pop(INPUTS_KEY, None)
        problems = []
        if old != settings:
            diff = {k: (old.get(k), settings.get(k)) for k in set(old) | set(settings)
                    if old.get(k) != settings.get(k)}
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            problems.append(f"was written with other settings ({changes})")
        changed = changed_inputs(old_inputs or {}, inputs)
        if changed:
            problems.append("was made from inputs that changed since: " + "; ".join(changed))
        if problems:
            fix = (f"redo the stage with `{command} --force`" if command else
                   f"re-run with --force to replace the outputs in {out_dir}, or choose "
                   "another output folder")
            raise DepthGError(f"{record} {' and '.join(problems)}; {fix}")
        if inputs:  # a record of an older version (no inputs) or a new split: add them
            merged = {**(old_inputs or {}), **inputs}
            if merged != old_inputs:
                save_json(record, {**settings, INPUTS_KEY: merged})
        return True
    if write:
        write_stage_record(out_dir, stage, settings, inputs)
    return False


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
    """Hold `<out_dir>/.<stage>.lock` while a stage writes there: a second run of the same
    stage on the same outputs stops at once with one clear message instead of interleaving
    its files with the first one's. The lock is the operating system's, so a killed run
    never leaves it held. A swap of `replaced_outputs` that a kill cut short is put in order
    first (`finish_interrupted_swap`)."""
    from filelock import FileLock, Timeout

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


# ------------------------------------------------------------------------------ forced runs
#
# A stage whose outputs are a folder of files (depth maps, crops) cannot replace them one by
# one under --force: an interruption would leave some new files, some old ones and a record
# that describes neither. A forced run writes a complete new folder beside the old one and
# swaps the two with renames, so the live folder always holds one complete run and its record.


def _beside(folder: Path, tag: str) -> Path:
    """`.<name>.<tag>` next to `folder`: hidden, so no dataset reader lists it as images."""
    return folder.parent / f".{folder.name}.{tag}"


def finish_interrupted_swap(folder: str | os.PathLike) -> None:
    """Put `folder` in order after a `replaced_outputs` swap that was cut short: between its
    two renames (no `folder`, the old one at `.<name>.old`) the old outputs go back, since the
    record in them describes them; after them only the old copy's removal is left to do."""
    folder = Path(folder)
    old = _beside(folder, "old")
    if not old.exists():
        return
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(old, folder)


@contextlib.contextmanager
def replaced_outputs(folder: str | os.PathLike, stage: str, settings: dict,
                     inputs: dict | None = None, keep=()) -> Iterator[Path]:
    """Yield the folder `.<name>.new` beside `folder` for a forced run to write its outputs
    into (it holds the new `<stage>.json` from the start); when the block succeeds, swap it
    in for `folder`.

    Why: a forced run that deleted the old outputs first and was then interrupted left a
    partial set, and a record of settings that no complete set had. Here an interruption or
    an error leaves `folder` untouched (its outputs and record whole), and the new folder
    waits: the same forced command, run again, continues in it (outputs already there are
    kept), while other settings or inputs start it afresh. `keep` names files of `folder`
    that this run does not redo (the other split's outputs, say); they are hard-linked
    (copied where a link is impossible) into the new folder. The swap is two renames
    (`folder` → `.<name>.old`, new → `folder`), then the old copy is removed; a kill between
    the renames is undone by the next `stage_lock` on `folder` (`finish_interrupted_swap`).
    Call it inside `stage_lock(folder, stage)`, after `check_stage_settings(..., write=False)`.
    """
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
