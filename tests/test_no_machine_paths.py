"""No committed file outside tests/ names a path of the machine it was made on (/work/…, /tmp/…):
code, notebooks, docs and shipped binaries (a checkpoint pickles its profile's source path)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATTERN = r"(^|[^A-Za-z0-9_.])/(work|tmp)/"


def _machine_paths(root: Path) -> list[str]:
    """`git grep` over the tracked files (binary ones included) outside tests/."""
    done = subprocess.run(["git", "grep", "-nE", PATTERN, "--", ".", ":!tests/**"], cwd=root,
                          capture_output=True, text=True, errors="replace")
    if done.returncode not in (0, 1):
        pytest.skip(f"git grep failed: {done.stderr.strip()}")
    return done.stdout.splitlines()


def test_no_absolute_machine_paths_in_committed_files():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    found = _machine_paths(ROOT)
    assert not found, ("absolute paths of a machine in committed files (use a path relative "
                       "to the repository, e.g. runs/…): " + "; ".join(found[:20]))


def test_the_check_sees_text_and_binary_files(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.py").write_text("OUT = '/work/runs/x'\nOK = 'runs/x'  # and a/tmp/b is fine\n")
    (tmp_path / "w.pt").write_bytes(b"\x00\x01source\x00/tmp/p.yaml\x00")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("P = '/tmp/allowed'\n")
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    found = _machine_paths(tmp_path)
    assert len(found) == 2 and found[0].startswith("a.py:1:"), found
    assert re.search(r"w\.pt", found[1]), found
