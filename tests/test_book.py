"""The course book: assembled from a small self-made executed run, built by Sphinx with warnings
as errors, checked for remote references, then opened in headless Chromium (Debian's
`chromium` driven by Playwright; skipped with a message where neither is installed)."""

import base64
import importlib.util
import io
import json
import re
import shutil

import pytest
from PIL import Image

from depthg_lib import book, config
from depthg_lib.errors import DepthGError

_SPEC = importlib.util.spec_from_file_location(
    "book_check", config.REPO_ROOT / "tools" / "book_check.py")
book_check = importlib.util.module_from_spec(_SPEC)  # a developer tool, outside the library
_SPEC.loader.exec_module(book_check)

NAMES = ["00_intro", "04_train"]
STATE = "application/vnd.jupyter.widget-state+json"


def _png(width=48, height=32) -> str:
    image = Image.new("RGB", (width, height))
    image.putdata([(4 * x % 256, 8 * y % 256, 128) for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _tqdm_widget(model_id="bar"):
    """A finished tqdm bar as papermill stores it: a view output plus the models' state."""
    output = {"output_type": "display_data", "metadata": {},
              "data": {"application/vnd.jupyter.widget-view+json": {"model_id": model_id},
                       "text/plain": "mine train:   0%|          | 0/8 [00:00<?, ?it/s]"}}
    state = {
        model_id: {"model_name": "HBoxModel", "state": {"children": [
            f"IPY_MODEL_{model_id}1", f"IPY_MODEL_{model_id}2", f"IPY_MODEL_{model_id}3"]}},
        f"{model_id}1": {"model_name": "HTMLModel",
                         "state": {"value": "mine\u2007train:\u2007100%"}},
        f"{model_id}2": {"model_name": "FloatProgressModel", "state": {"value": 8.0, "max": 8.0}},
        f"{model_id}3": {"model_name": "HTMLModel",
                         "state": {"value": "\u20078/8\u2007[00:01&lt;00:00,\u20076.10it/s]"}},
    }
    return output, state


def _notebook(cells, widget_state=None, end="2026-11-30T12:00:00+00:00"):
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}, "papermill": {"end_time": end}}
    if widget_state:
        meta["widgets"] = {STATE: {"state": widget_state, "version_major": 2,
                                   "version_minor": 0}}
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta, "cells": [
        {"id": f"c{i}", "metadata": {}, **cell} for i, cell in enumerate(cells)]}


def _md(text):
    return {"cell_type": "markdown", "source": text}


def _code(source, *outputs, tags=()):
    return {"cell_type": "code", "source": source, "execution_count": 1, "outputs": list(outputs),
            "metadata": {"tags": list(tags)}}


# what a chapter may hold that is wider than the page: long code, a long printed line, and a
# row of three formulas (chapter 05's Acc equation)
WIDE_CODE = ("scores = {name: evaluate(head, split, drop_extra=True, crf=False)"
             " for name, head in sorted(trained_heads.items()) if name.startswith('depthg')}")
WIDE_EQUATION = (
    "$$\\mathrm{IoU}_k = \\frac{tp_k}{tp_k + fp_k + fn_k}, \\qquad "
    "\\mathrm{mIoU} = \\frac{1}{|\\{k: \\mathrm{IoU}_k \\text{ defined}\\}|}\\sum_k "
    "\\mathrm{IoU}_k, \\qquad \\mathrm{Acc} = \\frac{\\sum_k tp_k}{\\sum_{ij} H_{ij}}"
    "\\qquad \\text{and a little more text to make it wider than any page}.$$")


def make_run(run_dir, docs_dir):
    """A two-chapter executed run (with a figure, formulas and a progress bar) and one note."""
    widget, state = _tqdm_widget()
    chapters = {
        "00_intro": _notebook([
            _md("# 00 · Intro\n\nWhat the course is about."),
            _code("print('hello')", {"output_type": "stream", "name": "stdout",
                                     "text": "hello\n"})]),
        "04_train": _notebook([
            _md("# 04 · Train\n\nThe code correlation $C_{ij}$ follows the feature "
                "correlation:\n\n$$\n\\mathcal{L} = -\\sum_{ij} (F_{ij} - b)\\, C_{ij}\n$$\n\n"
                "## Where the points go\n\nDepth-guided farthest point sampling spreads the "
                "points over the scene."),
            _code("# Parameters\nprofile = 'fixture'\n", tags=["injected-parameters"]),
            _code("train()", widget),
            _code("show_table()", {"output_type": "display_data", "metadata": {}, "data": {
                "text/markdown": "| arm | mIoU |\n|---|---:|\n| STEGO | 21.0 |\n| DepthG | 23.1 |",
                "text/plain": "<IPython.core.display.Markdown object>"}}),
            _code(WIDE_CODE, {"output_type": "stream", "name": "stdout",
                              "text": "x" * 240 + "\n"}),
            _md(WIDE_EQUATION),
            _code("show_sources()", {"output_type": "display_data", "metadata": {}, "data": {
                "text/markdown": "| source |\n|---|\n| " + "x" * 160 + " |",
                "text/plain": "<IPython.core.display.Markdown object>"}}),
            _code("show()", {"output_type": "display_data", "metadata": {},
                             "data": {"image/png": _png(), "text/plain": "<Figure>"}})],
            widget_state=state, end="2026-11-30T12:05:00+00:00"),
    }
    run_dir.mkdir(parents=True)
    for name, notebook in chapters.items():
        (run_dir / f"{name}.ipynb").write_text(json.dumps(notebook))
    summary = {"profile": "fixture", "device": "cpu", "seed": 0, "machine": "cpu2-fixture",
               "notebooks": {name: {"status": "ok", "seconds": 1.5, "results": {"miou": 25.04}}
                             for name in chapters}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    docs_dir.mkdir(parents=True)
    (docs_dir / "method.md").write_text(
        "# The method\n\nSee [§7.1](#s7-1).\n\n<a id=\"s7-1\"></a>\n\n## §7.1 · Sampling\n\n"
        "$$\nd(p, q) = \\lVert p - q \\rVert_2\n$$\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("book")
    make_run(root / "run", root / "docs")
    out = book.build_book(root / "run", NAMES, "fixture", docs_dir=root / "docs",
                          figure=config.REPO_ROOT / "figures" / "pipeline.png")
    return out


def test_widgets_keep_the_final_bar_text():
    output, state = _tqdm_widget()
    notebook = book.for_the_page(_notebook([_code("x", output)], widget_state=state))
    assert "widgets" not in notebook["metadata"]
    text = notebook["cells"][0]["outputs"][0]["data"]
    assert text == {"text/plain": "mine train: 100%|██████████| 8/8 [00:01<00:00, 6.10it/s]"}


def test_key_numbers_have_labels_and_sensible_rounding():
    assert book.key_number("unsupervised_miou", 21.5675) == "cluster probe mIoU 21.6"
    assert book.key_number("fps_thing_share", 0.1555) == "FPS points on things 15.6%"
    assert book.key_number("premise_feature_auroc", 0.8984) == "features AUROC 0.898"
    assert book.key_number("premise_depth_gain", 0.0034) == "depth adds (AUROC) +0.0034"
    assert book.key_number("head_minus_kmeans", -9.171) == "head − k-means (mIoU) -9.2"
    assert book.key_number("train_images", 16) == "training images 16"
    assert book.key_number("backend", "synth") == "backend synth"
    assert book.key_number("new_thing_miou", 3.14159) == "new thing mIoU 3.1"


def test_html_anchors_become_myst_targets():
    text = 'intro\n<a id="s6-1"></a>\n\n## §6.1\n<a id="x">inline</a>\n'
    assert book.html_anchors_as_targets(text) == 'intro\n(s6-1)=\n\n## §6.1\n<a id="x">inline</a>\n'


def test_raw_markdown_tables_are_found_outside_shown_code(tmp_path):
    (tmp_path / "page.html").write_text(
        '<p>| arm | mIoU |\n|---|---:|\n| a | 1 |</p>'  # not rendered: a reader sees this
        '<div class="cell_input"><pre>rows = ["|---|---|"]</pre></div>'  # code shown: fine
        '<pre>| a | b |\n| :-- | --: |</pre>'  # a code block of a note: fine
        '<div class="cell_output"><pre>|---|---|</pre></div><br><table><tr><td>ok</td></tr>'
        '</table>')
    found = book_check.raw_markdown_tables(tmp_path)
    assert found == ["page.html: |---|---:|", "page.html: |---|---|"]


def test_remote_references_are_found_and_links_are_not(tmp_path):
    (tmp_path / "page.html").write_text(
        '<a href="https://arxiv.org/abs/2309.12378">paper</a>'
        '<script src="https://cdn.example.org/x.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/f.css"><script src="_static/a.js">')
    (tmp_path / "s.css").write_text("a { background: url('https://example.org/i.png') }")
    found = book_check.remote_references(tmp_path)
    assert len(found) == 3
    assert not any("arxiv" in f for f in found)


def test_a_failed_chapter_stops_the_book(tmp_path):
    make_run(tmp_path / "run", tmp_path / "docs")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    summary["notebooks"]["04_train"].update(status="failed", error="cell 3: ValueError: no")
    (tmp_path / "run" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DepthGError, match="04_train failed in the run.*make course"):
        book.check_run(tmp_path / "run", NAMES, "fixture")


def test_a_missing_run_names_the_command(tmp_path):
    with pytest.raises(DepthGError, match="make course PROFILE=fixture"):
        book.check_run(tmp_path, NAMES, "fixture")


def test_the_book_is_built_self_contained(built):
    index = (built / "index.html").read_text()
    for name in NAMES:
        assert f'href="chapters/{name}.html"' in index
    assert "cpu2-fixture" in index and "2026-11-30 12:05 UTC" in index
    assert "mIoU 25.0" in index and "miou = " not in index  # a label, not the raw key
    assert (built / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert book_check.remote_references(built) == []
    chapter = (built / "chapters" / "04_train.html").read_text()
    assert "mine train: 100%|██████████| 8/8" in chapter  # the bar's final text, no widget
    assert book_check.raw_markdown_tables(built) == []
    assert re.search(r"<td[^>]*>\s*(<p>)?DepthG", chapter)  # the Markdown output, rendered
    assert "profile = &#39;fixture&#39;" not in chapter and "fixture'" not in chapter
    assert "left-prev" in chapter and "right-next" in chapter  # previous / next navigation
    assert (built / "notes" / "method.html").exists()


def test_a_warning_fails_the_build(tmp_path):
    make_run(tmp_path / "run", tmp_path / "docs")
    (tmp_path / "docs" / "method.md").write_text("# The method\n\nSee [§9](#nowhere).\n")
    with pytest.raises(DepthGError, match="(?s)did not build.*docs/method.md:3: .*nowhere"):
        book.build_book(tmp_path / "run", NAMES, "fixture", docs_dir=tmp_path / "docs",
                        figure=config.REPO_ROOT / "figures" / "pipeline.png")
    assert not (tmp_path / "run" / "book").exists()


def test_the_book_in_a_browser(built):
    chromium = book_check.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (Debian: `apt-get install chromium`, as .ci/run does "
                    "when root): the book was built but not opened in a browser")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make venv)")
    shot = config.runs_root() / "book-check" / "fixture_04.png"
    shot.unlink(missing_ok=True)
    report = book_check.browser_check(built, NAMES, screenshot=shot, chromium=chromium)
    # the long code line and printed line wrap and the Markdown table is rendered; only the
    # row of three formulas and the table with a 160-letter word are wider than the column
    # (a chapter must break such a row and shorten such a word)
    cut = [p for p in report["problems"] if "cut off (wider than its box)" in p]
    assert len(cut) == 2 and len(report["problems"]) == 2, report["problems"]
    assert any('"IoU' in p for p in cut) and any('"source xxxx' in p for p in cut), cut
    assert report["listed"] == NAMES
    assert report["chapters"]["04_train"] == {"images": 1, "formulas": 3, "tables": 2}
    assert any(h.startswith("chapters/04_train.html") for h in report["search_hits"])
    assert any("farthest point sampling" in t for t in report["search_snippets"])  # not titles only
    assert shot.exists() and shot.stat().st_size > 5_000


def test_the_check_tool_passes_a_clean_book_and_names_a_remote_file(built, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path))
    book_dir = tmp_path / "test" / "book"
    shutil.copytree(built, book_dir)
    assert book_check.main(["--profile", "test"]) == 0
    page = book_dir / "chapters" / "00_intro.html"
    page.write_text(page.read_text() + '<script src="https://cdn.example.org/x.js"></script>')
    with pytest.raises(DepthGError, match="1 problem.*00_intro.html.*cdn.example.org"):
        book_check.main(["--profile", "test"])
