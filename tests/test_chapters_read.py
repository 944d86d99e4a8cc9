"""The chapters as a learner reads them: each ends with a Summary in words whose numbers a cell
prints (never typed into the prose), says "Next chapter" once, and hands its exercises to the
checks unanswered, so that an executed chapter shows no answer."""

from __future__ import annotations

import json
import re

import pytest

from depthg_lib.config import chapters

NAMES = [p.stem for p in chapters()]


def _cells(name):
    path = next(p for p in chapters() if p.stem == name)
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


@pytest.mark.parametrize("name", NAMES)
def test_a_chapter_ends_with_a_summary_whose_numbers_a_cell_prints(name):
    cells = _cells(name)
    headings = [(i, line) for i, (kind, text) in enumerate(cells) if kind == "markdown"
                for line in text.splitlines() if line.startswith("## ")]
    last, heading = headings[-1]
    assert heading == "## Summary", f"{name} ends with {heading!r}"
    prose = cells[last][1]
    assert not re.search(r"\d+\.\d", prose), f"{name}: a number typed into the Summary's prose"
    printed = [text for kind, text in cells[last + 1:] if kind == "code"]
    assert printed and any("print(" in text for text in printed), name


@pytest.mark.parametrize("name", NAMES)
def test_next_chapter_is_said_once_at_most(name):
    said = sum(text.count("Next chapter") for _, text in _cells(name))
    assert said <= 1, f"{name} says 'Next chapter' {said} times"


@pytest.mark.parametrize("name", NAMES)
def test_exercises_reach_their_check_unanswered(name):
    """A check cell passes None or a template whose body is `...`: the executed chapter then
    prints "not answered yet" and no hint (exercises.core)."""
    for kind, text in _cells(name):
        if kind != "code" or "exercises.check(" not in text:
            continue
        answered = re.search(r"^answer = (?!None\b)", text, re.MULTILINE)
        assert not answered, f"{name}: a check cell holds an answer:\n{text}"
        for body in re.findall(r"^def \w+\(.*\):\n((?:    .*\n?)+)", text, re.MULTILINE):
            lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
            assert lines and lines[-1].startswith("..."), f"{name}: a template has a body:\n{text}"
