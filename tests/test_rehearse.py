"""The rehearsal (python -m depthg_lib.rehearse): stand-ins in the real layout read by the real
readers, every paper profile at a tiny scale, the parts of the top-k it mines for real, its
projections, its folder rules, and what the fetch dry run prints from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from depthg_lib import knn
from depthg_lib.config import REPO_ROOT, load_profile
from depthg_lib.data.readers import get_reader
from depthg_lib.errors import DepthGError
from depthg_lib.rehearse import runner, standin
from depthg_lib.rehearse.project import dry_run_lines, project
from depthg_lib.rehearse.runner import rehearse
from depthg_lib.rehearse.stages import BlockLimiter, Clock

PAPER = ["cocostuff27-vits8", "cocostuff27-vitb8", "cityscapes-vitb8", "potsdam-vits8",
         "stego-cocostuff27-vits8", "stego-cocostuff27-vitb8", "stego-cityscapes-vitb8",
         "stego-potsdam-vits8"]
TINY = {"cocostuff27": 0.0002, "cityscapes": 0.001, "potsdam": 0.0005}


def test_help_runs():
    done = subprocess.run([sys.executable, "-m", "depthg_lib.rehearse", "--help"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "--scale" in done.stdout and "--publish" in done.stdout


def test_counts_are_round_f_times_n_and_spread_over_the_split():
    assert standin.scaled_count(2975, 1.0) == 2975
    assert standin.scaled_count(49_629, 0.01) == 496
    assert standin.scaled_count(500, 1e-6) == 1  # every split exists
    names = standin.split_names("cityscapes", "train", 18)
    assert len(names) == 18 and len({n.rsplit("_", 2)[0] for n in names}) > 10  # many cities
    full = standin.split_names("cityscapes", "val", 500)
    assert len(set(full)) == 500
    coco_train = set(standin.split_names("cocostuff27", "train", 49_629))
    coco_val = set(standin.split_names("cocostuff27", "val", 2_175))
    assert len(coco_train) == 49_629 and not coco_train & coco_val


@pytest.mark.parametrize("dataset", ["cocostuff27", "cityscapes", "potsdam"])
def test_standin_is_read_by_the_real_reader_at_real_sizes(tmp_path, dataset):
    written = standin.write_standin(dataset, tmp_path, TINY[dataset])
    reader = get_reader(dataset, tmp_path)
    assert reader.check().usable
    for split in ("train", "val"):
        n = standin.scaled_count(standin.FACTS[dataset].counts[split], TINY[dataset])
        assert len(reader.names(split)) == n == written["images"][split]
    name = reader.names("train")[0]
    image, label = reader.load_image("train", name), reader.load_label("train", name)
    assert (image.shape[1], image.shape[0]) in standin.FACTS[dataset].sizes
    assert label.shape == image.shape[:2] and label.max() == 255  # ignore present
    assert label[label != 255].max() < reader.n_classes
    again = standin.write_standin(dataset, tmp_path, TINY[dataset])
    assert again["written"] == 0  # resumable: nothing rewritten


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PAPER if not p.startswith("stego-")])
def test_each_paper_profile_rehearses_at_a_tiny_scale(tmp_path, name):
    profile = load_profile(name)
    out = tmp_path / "rh"
    text = rehearse(name, TINY[profile.dataset], out, sample=0, only=["data", "depth", "crop"])
    records = runner.measured(out)
    assert set(records) == {"data", "depth", "crop"}
    for rec in records.values():
        assert rec["status"] == "ok" and rec["attempts"][-1]["peak_rss_bytes"] > 10e6
    crops = records["crop"]["detail"]["crops"]
    images = records["data"]["detail"]["images"]
    assert crops == {s: 5 * images[s] for s in ("train", "val")}
    assert records["crop"]["disk"]["files"] >= 3 * 5 * sum(images.values())
    assert "| crop |" in text and (out / "table.md").is_file()
    # the same command again runs nothing and keeps the measurements
    rehearse(name, TINY[profile.dataset], out, sample=0, only=["data", "depth", "crop"])
    assert len(runner.measured(out)["crop"]["attempts"]) == 1


@pytest.mark.slow
def test_force_measures_the_stage_doing_its_work_not_resuming(tmp_path):
    out = tmp_path / "rh"
    rehearse("potsdam-vits8", 0.0005, out, sample=0, only=["data", "depth", "crop"])
    crop_dir = load_profile(out / "profile" / "potsdam-vits8.yaml").paths.crop_dir
    first = next(crop_dir.rglob("*.jpg")).stat().st_mtime_ns
    rehearse("potsdam-vits8", 0.0005, out, sample=0, only=["crop"], force=True)
    assert next(crop_dir.rglob("*.jpg")).stat().st_mtime_ns > first  # cut again
    assert len(runner.measured(out)["crop"]["attempts"]) == 1  # a forced run starts afresh


@pytest.mark.slow
@pytest.mark.parametrize("name", [p for p in PAPER if p.startswith("stego-")])
def test_each_stego_twin_rehearses_its_data_at_a_tiny_scale(tmp_path, name):
    """The twins read their DepthG profile's data with the same stages: their own data stage
    is rehearsed here, the rest by the test above."""
    out = tmp_path / "rh"
    rehearse(name, TINY[load_profile(name).dataset], out, sample=0, only=["data"])
    rec = runner.measured(out)["data"]
    assert rec["status"] == "ok" and rec["disk"]["files"] > 0


@pytest.mark.slow
def test_backbone_knn_train_and_evaluate_run_on_the_standins(tmp_path):
    out = tmp_path / "rh"
    rehearse("potsdam-vits8", 0.0005, out, sample=0, batch=2,
             only=["weights", "data", "depth", "crop", "knn", "train", "evaluate"])
    records = runner.measured(out)
    assert all(r["status"] == "ok" for r in records.values())
    assert 80e6 < records["weights"]["disk"]["bytes"] < 100e6  # ViT-S/8's real size
    nns = knn.load_knn(load_profile(out / "profile" / "potsdam-vits8.yaml").paths.knn_file())
    assert nns.shape == (records["knn"]["detail"]["crops"], records["knn"]["detail"]["K"])
    assert records["train"]["disk"]["files"] > 0 and records["evaluate"]["disk"]["files"] > 0
    clock = records["train"]["detail"]["clock"]
    assert clock["head step"]["calls"] == 1
    assert clock["train forward"]["items"] == 2 * 2  # crops and their positives, per crop
    assert 0 < clock["train forward"]["cpu_seconds"]


def test_top_k_blocks_mined_for_real_match_the_full_search():
    feats = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    full = knn.topk_neighbours(feats, 3, block=4)
    clock = Clock()
    limiter = BlockLimiter(1, clock)
    real = knn.tqdm
    knn.tqdm = limiter
    try:
        part = knn.topk_neighbours(feats, 3, block=4, progress=True)
    finally:
        knn.tqdm = real
    assert (limiter.ran, limiter.total) == (1, 3) and clock["top-k block"]["items"] == 1
    np.testing.assert_array_equal(part[:4], full[:4])


def test_a_score_block_that_does_not_fit_is_refused_before_mining(monkeypatch):
    from depthg_lib.rehearse import stages

    profile = load_profile("cocostuff27-vits8")
    monkeypatch.setattr(stages, "available_memory", lambda: 4 * 10**9)
    need = 4096 * 248_145 * 4 * 2  # COCO's block of scores and its partitioned copy
    with pytest.raises(DepthGError, match="knn_block"):
        stages.check_memory(need, profile)
    stages.check_memory(need // 4, profile)  # 2 GB of 4: fits


def _record(seconds: dict, attempts_cpu: float = 1.0) -> dict:
    clock = {k: {"seconds": v, "items": 1, "calls": 1, "per_item": v} for k, v in seconds.items()}
    return {"attempts": [{"cpu_s": attempts_cpu, "wall_s": 1.0, "peak_rss_bytes": 1}],
            "disk": {"bytes": 1000, "files": 5}, "detail": {"clock": clock}}


def test_projection_scales_linear_stages_by_one_over_f_and_top_k_by_n_squared():
    original = load_profile("cocostuff27-vits8")
    crop = project("crop", _record({"five-crop": 10.0}), "cocostuff27", original, 0.1)
    assert crop["cpu_s"] == pytest.approx(100.0) and crop["disk_bytes"] == pytest.approx(1e4)
    n_full = 5 * 49_629
    rec = _record({"top-k block": 2.0, "stage (stand-in features)": 2.0})
    rec["detail"].update(crops=n_full // 2, dim=384, block=4096, **{"flops per crop": 0.0})
    k = project("knn", rec, "cocostuff27", original, 0.5)
    blocks = -(-n_full // 4096)
    assert k["cpu_s"] == pytest.approx(2.0 * 2 * blocks, rel=1e-3)  # block cost ∝ N


def test_a_stage_resumed_after_a_lost_attempt_projects_from_the_files_it_wrote():
    """A depth stage whose last attempt made the last 7,700 of 51,804 maps timed only those:
    its CPU is projected over every map, not read as the whole stage's."""
    original = load_profile("cocostuff27-vits8")
    rec = _record({"depth stage (embedded net)": 100.0})
    rec["attempts"][-1].update(files_before=44_104, files_after=51_804)
    depth = project("depth", rec, "cocostuff27", original, 1.0)
    assert depth["cpu_s"] == pytest.approx(100.0 * 51_804 / 7_700)
    fresh = project("depth", _record({"depth stage (embedded net)": 100.0}), "cocostuff27",
                    original, 1.0)
    assert fresh["cpu_s"] == pytest.approx(100.0)


def test_top_k_arithmetic_on_a_gpu_is_a_fraction_of_a_second_at_coco_scale():
    """docs/scaling.md once put 4.6·10¹³ FLOP at 200 TFLOP/s as 4 minutes (it is 0.23 s)."""
    original = load_profile("cocostuff27-vits8")
    n_full = 5 * 49_629
    rec = _record({"top-k block": 1.0, "stage (stand-in features)": 1.0})
    rec["detail"].update(crops=n_full, dim=384, block=4096, **{"flops per crop": 0.0})
    gpu = project("knn", rec, "cocostuff27", original, 1.0)["gpu_s"]
    assert 0.3 < gpu < 0.6  # 2·N²·D / 100 TFLOP/s = 0.47 s


def test_out_must_not_overlap_real_data_or_the_repository(tmp_path):
    profile = load_profile("cityscapes-vitb8", data_root=str(tmp_path / "real"))
    settings = {"profile": profile.name, "scale": 0.01, "sample": 0}
    for inside in (tmp_path / "real" / "cityscapes" / "rehearse", tmp_path):
        with pytest.raises(DepthGError, match="overlaps"):
            runner.open_rehearsal(inside, profile, settings, "")
    assert not (tmp_path / "real").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    with pytest.raises(DepthGError, match="not a rehearsal folder"):
        runner.open_rehearsal(tmp_path / "mine", profile, settings, "")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["precious.txt"]


def test_dry_run_lines_come_from_the_shipped_rehearsal(tmp_path):
    path = tmp_path / "measurements.json"
    shipped = load_profile("cityscapes-vitb8")
    assert "no rehearsal" in dry_run_lines(shipped, path)[0]
    row = {"status": "ok", "peak_rss_bytes": 2e9,
           "projected": {"disk_bytes": 3e9, "gpu_s": 600.0, "cpu_s": 6000.0}}
    path.write_text('{"cityscapes-vitb8": ' + json.dumps(
        {"scale": 1, "machine": "cpu2-vm", "date": "2026-12-06",
         "stages": {"crop": row, "knn": row}}) + "}")
    lines = dry_run_lines(shipped, path)
    assert "measured at full size" in lines[0]
    assert "6.0 GB" in lines[-1] and "20 min" in lines[-1]
    assert "measured at full size" in dry_run_lines(load_profile("stego-cityscapes-vitb8"),
                                                     path)[0]


def test_dry_run_of_an_edited_copy_reads_its_shipped_profiles_rehearsal(tmp_path):
    """A copy of a shipped profile runs under `<name>-<hex>`; its rehearsal is the shipped
    profile's, and a missing one is suggested with a --profile that loads the copy."""
    copy = tmp_path / "cityscapes-vitb8.yaml"
    copy.write_text(Path(load_profile("cityscapes-vitb8").source).read_text())
    mine = load_profile(copy)
    assert mine.name != "cityscapes-vitb8"
    path = tmp_path / "measurements.json"
    missing = dry_run_lines(mine, path)[0]
    assert f"--profile {copy}" in missing and mine.name not in missing
    path.write_text('{"cityscapes-vitb8": {"scale": 1, "machine": "m", "date": "d", '
                    '"stages": {}}}')
    assert "measured at full size" in dry_run_lines(mine, path)[0]


SLEEPER = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
WAITER = """
import json, sys
from depthg_lib.rehearse.runner import _run_child
with open(sys.argv[1], "w") as log:
    rc, usage, got = _run_child([sys.executable, "-c", sys.argv[2]], log, None)
print(json.dumps({"rc": rc, "signals": got}), flush=True)
"""


def test_a_signal_to_the_rehearsal_stops_its_stage_child_and_is_reported(tmp_path):
    """SIGTERM to the rehearsal reaches the stage's child (in its own process group) once,
    and the parent lives on to record the attempt — it never leaves the child running."""
    log = tmp_path / "child.log"
    parent = subprocess.Popen([sys.executable, "-c", WAITER, str(log), SLEEPER],
                              stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    deadline = time.monotonic() + 30
    while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(log.read_text())
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=30)
    assert json.loads(out) == {"rc": -signal.SIGTERM, "signals": [signal.SIGTERM]}
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)


def test_an_interrupted_stage_records_its_attempt_and_files_then_stops(tmp_path, monkeypatch):
    original = load_profile("potsdam-vits8")
    settings = {"profile": original.name, "scale": 0.0005, "sample": 0, "steps": 1,
                "batch": None, "knn_blocks": 1}
    out = tmp_path / "rh"
    runner.open_rehearsal(out, original, settings, "python -m depthg_lib.rehearse")
    usage = types.SimpleNamespace(ru_utime=1.5, ru_stime=0.5, ru_maxrss=1024)
    monkeypatch.setattr(runner, "_run_child", lambda *a: (-15, usage, [15]))
    with pytest.raises(KeyboardInterrupt):
        runner.run_stage(out, "depth", settings)
    record = runner.measured(out)["depth"]
    assert record["status"] == "interrupted"
    assert record["attempts"][-1]["cpu_s"] == 2.0
    assert {"files_before", "files_after"} <= set(record["attempts"][-1])


def test_a_forced_attempt_keeps_no_files_from_before(tmp_path, monkeypatch):
    """A forced stage deletes its outputs and makes them all again: its attempt counts no file
    as found (else a forced depth run over a partial one would project its CPU several-fold)."""
    original = load_profile("potsdam-vits8")
    settings = {"profile": original.name, "scale": 0.0005, "sample": 0, "steps": 1,
                "batch": None, "knn_blocks": 1}
    out = tmp_path / "rh"
    runner.open_rehearsal(out, original, settings, "python -m depthg_lib.rehearse")
    profile = load_profile(out / "profile" / f"{original.name}.yaml")
    (profile.paths.dataset_dir / "depth").mkdir(parents=True)
    (profile.paths.dataset_dir / "depth" / "old.png").write_bytes(b"map")
    usage = types.SimpleNamespace(ru_utime=1.0, ru_stime=0.0, ru_maxrss=1024)
    monkeypatch.setattr(runner, "_run_child", lambda *a: (-15, usage, [15]))
    for force, kept in ((False, 1), (True, 0)):
        with pytest.raises(KeyboardInterrupt):
            runner.run_stage(out, "depth", settings, force=force)
        assert runner.measured(out)["depth"]["attempts"][-1]["files_before"] == kept
