"""The course runner: runs chapters in order, skips finished ones, stops loudly on failure."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from depthg_lib.course import main, run_course
from depthg_lib.errors import DepthGError


def _notebook(path, body):
    nb = new_notebook()
    params = new_code_cell('profile = "demo"\ndevice = "auto"\nseed = 0\nforce = False')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    (tmp_path / "nb").mkdir()
    profile = tmp_path / "tiny.yaml"
    profile.write_text("extends: test\n")
    return tmp_path, profile


def test_runs_in_order_records_numbers_then_skips(sandbox, capsys):
    root, profile = sandbox
    _notebook(root / "nb" / "00_first.ipynb",
              "from depthg_lib.results import record\n"
              "record(profile, '00_first', answer=42, seed_seen=seed)")
    _notebook(root / "nb" / "01_second.ipynb", "x = 1")
    _notebook(root / "nb" / "A1_appendix.ipynb", "raise RuntimeError('appendix is not run')")
    summary = run_course(str(profile), notebook_dir=root / "nb", seed=3)
    out = root / "runs" / "tiny"
    assert (out / "00_first.ipynb").exists() and (out / "01_second.ipynb").exists()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["notebooks"]["00_first"]["results"] == {"answer": 42, "seed_seen": 3}
    assert saved["notebooks"]["01_second"]["status"] == "ok"
    assert summary["seed"] == 3
    run_course(str(profile), notebook_dir=root / "nb", seed=3)
    assert capsys.readouterr().out.count("skipped") == 2


def test_failure_names_notebook_cell_and_error(sandbox):
    root, profile = sandbox
    _notebook(root / "nb" / "00_ok.ipynb", "y = 2")
    _notebook(root / "nb" / "01_bad.ipynb", "raise ValueError('depth map is empty')")
    with pytest.raises(DepthGError, match=r"01_bad\.ipynb failed at cell 2.*depth map is empty"):
        run_course(str(profile), notebook_dir=root / "nb")
    out = root / "runs" / "tiny"
    assert (out / "00_ok.ipynb").exists()  # earlier outputs kept
    assert not (out / "01_bad.ipynb").exists() and (out / "01_bad.failed.ipynb").exists()
    status = json.loads((out / "summary.json").read_text())["notebooks"]["01_bad"]["status"]
    assert status == "failed"


def test_unknown_profile_and_chapter(capsys):
    with pytest.raises(SystemExit) as exit_info:
        from depthg_lib.errors import run_cli
        run_cli(main, ["--profile", "nope"])
    assert exit_info.value.code == 2
    assert "Valid profiles" in capsys.readouterr().err
    with pytest.raises(DepthGError, match="no chapter starts with 99"):
        run_course("test", only="99")


def test_force_reaches_the_chapters_and_new_weights_rerun_them(sandbox, monkeypatch, capsys):
    import depthg_lib.course as course_mod

    root, profile = sandbox
    manifest = root / "manifest.json"
    manifest.write_text('{"vit": {"sha256": "aaa", "quality": 1}}')
    monkeypatch.setattr(course_mod, "MANIFEST", manifest)
    _notebook(root / "nb" / "00_first.ipynb",
              "from depthg_lib.results import record\n"
              "record(profile, '00_first', force_seen=force)")
    summary = run_course(str(profile), notebook_dir=root / "nb")
    assert summary["notebooks"]["00_first"]["results"] == {"force_seen": False}
    summary = run_course(str(profile), notebook_dir=root / "nb", force=True)
    assert summary["notebooks"]["00_first"]["results"] == {"force_seen": True}
    manifest.write_text('{"vit": {"sha256": "aaa", "quality": 2}}')  # a figure: no re-run
    run_course(str(profile), notebook_dir=root / "nb")
    assert capsys.readouterr().out.count("skipped") == 1
    manifest.write_text('{"vit": {"sha256": "bbb", "quality": 2}}')  # new weights: run again
    run_course(str(profile), notebook_dir=root / "nb")
    assert capsys.readouterr().out.count("skipped") == 0
