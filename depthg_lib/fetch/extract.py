"""Atomic extraction of a downloaded archive into the folder a dataset reader reads."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DepthGError


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract `archive` into `dest` atomically: into a temporary folder beside it, then one
    rename. A single top-level folder in the archive (STEGO's `cityscapes/`…) becomes `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".extract-{dest.name}-*"):  # an interrupted earlier run
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{dest.name}-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = tmp.resolve()
                members = zf.infolist()
                for info in tqdm(members, desc=f"extract {archive.name}", unit="file",
                                 leave=False, disable=len(members) < 1000):
                    target = (tmp / info.filename).resolve()
                    if not target.is_relative_to(root):
                        raise DepthGError(f"archive {archive} holds {info.filename!r}, a path "
                                          "outside the folder it extracts to; refusing it")
                    zf.extract(info, tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DepthGError(f"cannot extract {archive} ({type(err).__name__}: {err}); delete "
                              "it and run the same command again to download it anew") from None
        entries = [p for p in tmp.iterdir() if p.name != "__MACOSX"]
        src = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if dest.exists():
            if any(dest.iterdir()):
                raise DepthGError(f"{dest} already holds files; move it away to extract "
                                  f"{archive} there")
            dest.rmdir()
        os.replace(src, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest

