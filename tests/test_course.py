"""The course runner: runs chapters in order, skips finished ones, stops loudly on failure."""

import json
import sys

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
    import depthg_lib.course as course_mod

    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    if hasattr(course_mod, "library_digest"):  # others edit the library while tests run
        real = course_mod.library_digest
        monkeypatch.setattr(course_mod, "library_digest",
                            lambda lib_dir=None: "fixed" if lib_dir is None else real(lib_dir))
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


def test_a_bad_profile_is_refused_before_torch_loads(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "depthg_lib.env", None)  # importing it now fails
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: test\nstepz: 3\n")
    with pytest.raises(DepthGError, match="bad.yaml: unknown key 'stepz'; did you mean 'steps'"):
        run_course(str(bad), notebook_dir=tmp_path)


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


def test_profile_file_reaches_the_notebooks_and_records_use_its_name(sandbox):
    root, profile = sandbox
    _notebook(root / "nb" / "00_first.ipynb",
              "from depthg_lib.config import load_profile\n"
              "from depthg_lib.results import record\n"
              "cfg = load_profile(profile)\n"
              "record(profile, '00_first', name=cfg.name, steps=cfg.steps)")
    summary = run_course(str(profile), notebook_dir=root / "nb")
    assert summary["notebooks"]["00_first"]["results"] == {"name": "tiny", "steps": 20}
    assert (root / "runs" / "tiny" / "results" / "00_first.json").exists()


def test_edited_copy_named_like_a_shipped_profile_runs_itself(sandbox, tmp_path):
    root, _ = sandbox
    mine = tmp_path / "elsewhere" / "test.yaml"
    mine.parent.mkdir()
    mine.write_text("extends: test\nsteps: 3\n")
    _notebook(root / "nb" / "00_first.ipynb",
              "from depthg_lib.config import load_profile\n"
              "from depthg_lib.results import record\n"
              "record(profile, '00_first', steps=load_profile(profile).steps)")
    summary = run_course(str(mine), notebook_dir=root / "nb")
    assert summary["notebooks"]["00_first"]["results"] == {"steps": 3}  # not the shipped 20


def test_library_source_is_part_of_the_fingerprint(sandbox, monkeypatch, capsys, tmp_path):
    import depthg_lib.course as course_mod

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "losses.py").write_text("SHIFT = 0.1\n")
    first = course_mod.library_digest(lib)
    (lib / "losses.py").write_text("SHIFT = 0.2\n")
    assert course_mod.library_digest(lib) != first

    root, profile = sandbox
    _notebook(root / "nb" / "00_first.ipynb", "x = 1")
    monkeypatch.setattr(course_mod, "library_digest", lambda: "v1")
    run_course(str(profile), notebook_dir=root / "nb")
    run_course(str(profile), notebook_dir=root / "nb")
    assert capsys.readouterr().out.count("skipped") == 1
    monkeypatch.setattr(course_mod, "library_digest", lambda: "v2")  # losses.py edited
    run_course(str(profile), notebook_dir=root / "nb")
    out = capsys.readouterr().out
    assert "skipped" not in out and "library changed" in out


def test_stale_chapters_are_named_with_what_changed(sandbox, capsys, monkeypatch):
    """Running a later chapter after a library edit names the earlier ones stale for the
    library, not because 'an earlier chapter ran again' (it did not)."""
    import depthg_lib.course as course_mod

    root, profile = sandbox
    for name in ("00_data", "01_depth"):
        _notebook(root / "nb" / f"{name}.ipynb", "x = 1")
    run_course(str(profile), notebook_dir=root / "nb")
    capsys.readouterr()
    monkeypatch.setattr(course_mod, "library_digest", lambda: "v2")
    summary = run_course(str(profile), notebook_dir=root / "nb", only="01")
    assert summary["notebooks"]["00_data"]["status"] == "stale"
    out = capsys.readouterr().out
    assert "now stale: 00_data (library changed)" in out and "ran again" not in out


def test_rerunning_one_chapter_makes_later_ones_stale(sandbox, capsys):
    root, profile = sandbox
    for name in ("00_data", "01_depth", "02_crop"):
        _notebook(root / "nb" / f"{name}.ipynb", "x = 1")
    run_course(str(profile), notebook_dir=root / "nb")
    summary = run_course(str(profile), notebook_dir=root / "nb", only="01", force=True)
    assert summary["notebooks"]["02_crop"]["status"] == "stale"
    assert summary["notebooks"]["00_data"]["status"] == "ok"
    assert "now stale: 02_crop (chapter 01 ran again)" in capsys.readouterr().out
    run_course(str(profile), notebook_dir=root / "nb")
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "02_crop: running (chapter 01 ran again changed)" in out


def test_a_chapter_runs_without_warnings_about_parameters_or_plain_sockets(sandbox, capfd,
                                                                          caplog):
    root, profile = sandbox
    nb = new_notebook()
    params = new_code_cell('profile = "demo"\ndevice = "auto"\nseed = 0')  # no `force`
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, new_code_cell("from depthg_lib.results import record\n"
                                      "record(profile, '00_quiet', seed_seen=seed)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, root / "nb" / "00_quiet.ipynb")
    summary = run_course(str(profile), notebook_dir=root / "nb", seed=4, force=True)
    assert summary["notebooks"]["00_quiet"]["results"] == {"seed_seen": 4}
    seen = capfd.readouterr()
    assert "unknown parameter" not in seen.out + seen.err + caplog.text
    assert "without encryption" not in seen.out + seen.err


def _summary(root, name="tiny"):
    return json.loads((root / "runs" / name / "summary.json").read_text())["notebooks"]


def test_a_chapter_is_recorded_as_running_before_it_starts(sandbox):
    root, profile = sandbox
    _notebook(root / "nb" / "00_first.ipynb",
              "import json, os\n"
              "from depthg_lib.config import load_profile\n"
              "from depthg_lib.results import record\n"
              "summary = load_profile(profile).paths.run_dir / 'summary.json'\n"
              "status = json.loads(summary.read_text())['notebooks']['00_first']['status']\n"
              "record(profile, '00_first', status_seen=status)")
    summary = run_course(str(profile), notebook_dir=root / "nb")
    assert summary["notebooks"]["00_first"]["results"] == {"status_seen": "running"}
    assert _summary(root)["00_first"]["status"] == "ok"


def test_a_prose_edit_reruns_that_chapter_only(sandbox, capsys):
    root, profile = sandbox
    first = root / "nb" / "00_data.ipynb"
    _notebook(first, "x = 1")
    _notebook(root / "nb" / "01_depth.ipynb", "y = 2")
    run_course(str(profile), notebook_dir=root / "nb")
    capsys.readouterr()
    nb = nbformat.read(first, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("One more sentence for the reader."))
    nb.cells[1].source = "x = 1  # a comment that explains x\n\n# and a line of its own"
    nbformat.write(nb, first)
    summary = run_course(str(profile), notebook_dir=root / "nb")
    out = capsys.readouterr().out
    assert "00_data: running (notebook changed)" in out and "01_depth: done earlier" in out
    assert "One more sentence" in (root / "runs" / "tiny" / "00_data.ipynb").read_text()
    assert {e["status"] for e in summary["notebooks"].values()} == {"ok"}
    nb.cells[1].source = "x = 2  # a comment that explains x"  # the code: later chapters redo
    nbformat.write(nb, first)
    run_course(str(profile), notebook_dir=root / "nb")
    assert "01_depth: running (chapter 00 ran again changed)" in capsys.readouterr().out


def test_a_profile_file_named_like_a_shipped_one_has_its_own_run_folder(sandbox, tmp_path):
    root, _ = sandbox
    for name in ("00_data", "01_depth"):
        _notebook(root / "nb" / f"{name}.ipynb", "x = 1")
    run_course("test", notebook_dir=root / "nb")
    shipped = (root / "runs" / "test" / "summary.json").read_text()
    mine = tmp_path / "elsewhere" / "test.yaml"
    mine.parent.mkdir()
    mine.write_text("extends: test\nsteps: 3\n")  # an edited copy
    summary = run_course(str(mine), notebook_dir=root / "nb", only="00")
    assert (root / "runs" / "test" / "summary.json").read_text() == shipped  # untouched
    folders = sorted(p.name for p in (root / "runs").iterdir())
    assert len(folders) == 2 and folders[1].startswith("test-"), folders
    assert summary["profile"] == folders[1]
    assert (root / "runs" / folders[1] / "00_data.ipynb").exists()


def test_a_killed_runs_temporary_copy_is_removed_by_the_next_run(sandbox):
    root, profile = sandbox
    _notebook(root / "nb" / "00_first.ipynb", "x = 1")
    run_course(str(profile), notebook_dir=root / "nb")
    left = root / "runs" / "tiny" / ".00_first.ipynb.k1ll3d.tmp.ipynb"  # as kill -9 leaves it
    left.write_text("{}")
    mine = root / "runs" / "tiny" / ".my_notes.tmp.ipynb"  # not the runner's: kept
    mine.write_text("{}")
    run_course(str(profile), notebook_dir=root / "nb")
    assert not left.exists() and mine.exists()
