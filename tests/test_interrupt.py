"""Interrupting the course runner for real: SIGTERM or Ctrl-C (SIGINT) sent to a runner
process while chapter 03's kNN stage is mining (`course --only 03 --force`). What must hold
afterwards: the runner exits with one message naming the command that finishes the work; the
neighbours of the last complete run are still there, unchanged; the summary says the chapter
was interrupted (never `ok`); no temporary notebook is left; and that command then re-runs
chapter 03, which finds its neighbours complete and keeps them.

The data (SynthScenes, depth, crops) are made in this process, as chapters 00–02 would make
them, so that only chapter 03 runs in a kernel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from depthg_lib.config import REPO_ROOT, load_profile

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("children_hear_sigint")]
PROC_LOCKS = Path("/proc/locks")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A profile file with its own data and runs, chapter 03 run once by the real runner."""
    from depthg_lib.crop import run_crop_stage
    from depthg_lib.data import synthscenes
    from depthg_lib.depth import run_depth_stage

    if not PROC_LOCKS.exists():
        pytest.skip("needs Linux's /proc/locks to see when the kNN stage holds its lock")
    root = tmp_path_factory.mktemp("interrupt")
    profile = root / "tiny.yaml"
    profile.write_text(f"extends: test\ndata_root: {root / 'data'}\n")
    cfg = load_profile(profile)
    synthscenes.generate(cfg.paths.dataset_dir, n_train=cfg.synth_n_train,
                         n_val=cfg.synth_n_val, size=cfg.synth_size, seed=cfg.synth_seed,
                         progress=False)
    run_depth_stage(cfg, device="cpu", progress=False)
    run_crop_stage(cfg, split="all", progress=False)
    env = {**os.environ, "DEPTHG_RUNS": str(root / "runs"), "OMP_NUM_THREADS": "1"}
    done = _course(env, profile, "--only", "03")
    assert done.returncode == 0, done.stderr
    return env, profile, cfg


def _course(env, profile, *args, **kwargs):
    command = [sys.executable, "-m", "depthg_lib.course", "--profile", str(profile), *args]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, **kwargs)


def _held(lock: Path) -> bool:
    """Whether some process holds `lock` now (read from /proc/locks; nothing is taken)."""
    inode = f":{lock.stat().st_ino}"
    return any(len(fields) > 5 and fields[5].endswith(inode)
               for fields in map(str.split, PROC_LOCKS.read_text().splitlines()))


def _interrupt_while_mining(env, profile, knn_file: Path, sig: int):
    lock = knn_file.parent / f".{knn_file.stem}.knn.lock"
    runner = subprocess.Popen(
        [sys.executable, "-m", "depthg_lib.course", "--profile", str(profile), "--only", "03",
         "--force"], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 300
    while not _held(lock):
        assert runner.poll() is None, "the runner ended before the kNN stage began"
        assert time.monotonic() < deadline, "the kNN stage never began"
        time.sleep(0.02)
    time.sleep(0.2)  # the stage is mining (it takes seconds): well past its record and checks
    assert _held(lock), "the kNN stage finished before the signal: it cannot be tested here"
    runner.send_signal(sig)
    out, err = runner.communicate(timeout=300)
    return runner.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_forced_chapter_keeps_the_last_complete_outputs(course, sig):
    env, profile, cfg = course
    knn_file = cfg.paths.knn_file("train")
    run_dir = Path(env["DEPTHG_RUNS"]) / cfg.name
    before = knn_file.read_bytes()
    code, out, err = _interrupt_while_mining(env, profile, knn_file, sig)
    assert code == 130, (code, err)
    # one message from the runner (its kernel, shutting down, may still log to stderr)
    messages = [line for line in err.splitlines() if line.startswith("interrupted")]
    command = f"python -m depthg_lib.course --profile {profile}"
    assert len(messages) == 1 and f"`{command}`" in messages[0], err
    assert knn_file.read_bytes() == before  # the old neighbours, complete
    summary = json.loads((run_dir / "summary.json").read_text())["notebooks"]
    assert summary["03_mine_knn"]["status"] == "interrupted"
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]
    stamp = knn_file.stat().st_mtime_ns
    again = _course(env, profile, "--only", "03")  # the named command, on this chapter
    assert again.returncode == 0, again.stderr
    assert "03_mine_knn: running" in again.stdout
    assert knn_file.stat().st_mtime_ns == stamp  # complete: kept, not mined again
    summary = json.loads((run_dir / "summary.json").read_text())["notebooks"]
    assert summary["03_mine_knn"]["status"] == "ok"
