"""Files from the network: HTTP downloads that resume (a `.part` file and a Range request), the
ledger of their sha256 and size that later runs check, the atomic extraction of an archive into
the folder a reader reads, and models through the Hugging Face hub cache."""

from __future__ import annotations

import datetime
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from tqdm.auto import tqdm

from ..errors import DepthGError
from ..io import load_json, save_json, sha256_file
from .sources import ENV_DINO, ENV_STEGO, Item

LEDGER = "fetch-ledger.json"
CHUNK = 1 << 20


class Ledger:
    """sha256 and size of everything fetched, keyed by source (`<data_root>/fetch-ledger.json`)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict = load_json(path)["files"] if path.exists() else {}

    def get(self, source: str) -> dict:
        return self.entries.get(source, {})

    def record(self, source: str, **values) -> None:
        values["recorded"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self.entries[source] = {**self.get(source), **values}
        save_json(self.path, {"format": 1, "files": self.entries})


def remote_size(url: str) -> int | None:
    """Content-Length from a HEAD request; None when the server cannot be asked."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as resp:
            return int(resp.headers["Content-Length"])
    except (OSError, ValueError, TypeError, http.client.HTTPException):
        return None


def _write_body(resp, part: Path, have: int, url: str, progress: bool) -> int:
    """Write the body to `part` (appended where the server resumed at `have`); returns the bytes
    in `part`, refusing a short or broken body."""
    have = have if resp.status == 206 else 0  # else the server sent the whole file
    length = resp.headers.get("Content-Length")
    total = have + int(length) if length is not None else None
    broken = ""
    with tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
              desc=part.name.removesuffix(".part"), disable=not progress, leave=False) as bar:
        try:
            with open(part, "ab" if have else "wb") as fh:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as err:  # a timeout is an OSError
            broken = f" ({type(err).__name__})"
    got = part.stat().st_size if part.exists() else 0
    if broken or (total is not None and got != total):
        raise DepthGError(f"download of {url} was interrupted at {got} of {total or '?'} bytes"
                          f"{broken}; run the same command again to resume from {part}")
    return got


def download(url: str, dest: Path, ledger: Ledger, progress: bool = True) -> None:
    """Download `url` to `dest` through `dest.part`, resumed; its sha256, checked against the
    ledger's (a mismatch deletes the part), is recorded before the rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "depthg-course-fetch", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:
            raise DepthGError(f"downloading {url} failed: HTTP {err.code} {err.reason}; check "
                              f"the address (base URLs: ${ENV_DINO}, ${ENV_STEGO})") from None
        if remote_size(url) != have:  # 416: nothing after `have`, yet not the whole file
            part.unlink()
            return download(url, dest, ledger, progress)
        got = have
    except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
        raise DepthGError(
            f"cannot reach {urllib.parse.urlsplit(url).netloc} to download {url} "
            f"({getattr(err, 'reason', err)}); this machine looks offline. Run `python -m "
            f"depthg_lib.fetch` on a machine with a network and copy {dest} here, or point "
            f"{ENV_DINO} / {ENV_STEGO} at a reachable mirror") from None
    else:
        with resp:
            got = _write_body(resp, part, have, url, progress)
    digest, expected = sha256_file(part), ledger.get(url).get("sha256", "")
    if expected and digest != expected:
        part.unlink()
        raise DepthGError(
            f"checksum mismatch for {url}: sha256 {digest}, expected {expected} (recorded in "
            f"{ledger.path}); the download was corrupted or the file changed on the server. "
            "The partial file was deleted: run the same command again; if it fails again, "
            "the source changed — remove its entry from the ledger to accept the new file")
    ledger.record(url, sha256=digest, size=got, path=str(dest))
    os.replace(part, dest)


def verify_file(url: str, dest: Path, ledger: Ledger, deep: bool) -> str:
    """Check a present file against the ledger: its size always, its sha256 when `deep`."""
    entry = ledger.get(url)
    if not entry:
        return "present (not in the ledger)"
    size = dest.stat().st_size
    if entry.get("size") is not None and size != entry["size"]:
        raise DepthGError(f"{dest} has {size} bytes but {entry['size']} were downloaded "
                          f"({ledger.path}); delete it and run the same command again")
    if deep and sha256_file(dest) != entry.get("sha256"):
        raise DepthGError(f"{dest} does not have the sha256 recorded in {ledger.path} when it "
                          "was downloaded; delete it and run the same command again")
    return "present, sha256 verified" if deep else "present"


def extract_zip(archive: Path, dest: Path) -> None:
    """Extract `archive` into `dest` atomically: into a temporary folder beside it, then one
    rename. A single top-level folder in the archive (STEGO's `cityscapes/`…) becomes `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".extract-{dest.name}-*"):  # an interrupted earlier run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{dest.name}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in tqdm(zf.infolist(), desc=f"extract {archive.name}", leave=False):
                if not (tmp / info.filename).resolve().is_relative_to(tmp.resolve()):
                    raise DepthGError(f"archive {archive} holds {info.filename!r}, a path "
                                      "outside the folder it extracts to; refusing it")
                zf.extract(info, tmp)
        entries = [p for p in tmp.iterdir() if p.name != "__MACOSX"]
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if dest.exists() and any(dest.iterdir()):
            raise DepthGError(f"{dest} already holds files; move it away to extract {archive} "
                              "there")
        os.replace(src, dest)  # onto an empty folder too
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DepthGError(f"cannot extract {archive} ({type(err).__name__}: {err}); delete it "
                          "and run the same command again to download it anew") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def hub_snapshot(repo: str, allow: list[str] | None = None, download: bool = True) -> Path | None:
    """A hub repo's snapshot folder: cached, else downloaded (else None if not `download`)."""
    try:
        return Path(snapshot_download(repo, local_files_only=True, allow_patterns=allow))
    except Exception:  # not cached (the hub raises several types for that)
        if not download:
            return None
    cached = f"{constants.HF_HUB_CACHE}/models--{repo.replace('/', '--')}"
    try:
        return Path(snapshot_download(repo, allow_patterns=allow))
    except Exception as err:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else (
            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        raise DepthGError(f"{repo} is not in the Hugging Face cache and cannot be downloaded "
                          f"({why}); on a machine with a network run the same command, then "
                          f"copy {cached} to the same place here") from None


def fetch_hub(item: Item, ledger: Ledger) -> str:
    """A hub item in the cache and the ledger, a backbone also linked where it is read."""
    patterns = [["*.json", "model.safetensors"]] if item.kind == "backbone" else [
        ["*.json", "*.safetensors", "*.txt"], ["*.json", "*.bin", "*.txt"]]  # .bin: older repos
    for allow in patterns:
        snap = hub_snapshot(item.hub_repo, allow)
        weights = sorted(p for p in snap.iterdir() if p.suffix in (".safetensors", ".bin"))
        if weights:
            break
    else:
        raise DepthGError(f"{item.hub_repo} in the hub cache ({snap}) holds no weight file "
                          "(.safetensors or .bin); delete that folder and run again")
    source = f"hf://{item.hub_repo}@{snap.name}"
    if not ledger.get(source):
        ledger.record(source, revision=snap.name, path=str(snap),
                      files={p.name: p.resolve().name for p in weights})
    if item.kind != "backbone":
        return f"in the hub cache: {snap}"
    if item.dest.exists():
        return f"present ({item.dest})"
    item.dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        item.dest.symlink_to(weights[0].resolve())
    except OSError:  # a file system without links
        shutil.copyfile(weights[0], item.dest)
    return f"linked {item.dest} → hub cache"
