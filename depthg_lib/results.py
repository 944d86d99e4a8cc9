"""Key numbers a chapter reports, collected by the course runner into `summary.json`."""

from __future__ import annotations

import numbers

from . import config
from .io import load_json, save_json


def results_file(profile_name: str, chapter: str):
    return config.runs_root() / profile_name / "results" / f"{chapter}.json"


def record(profile_name: str, chapter: str, **values) -> dict:
    """Merge `values` (numbers or short strings) into the chapter's results file."""
    path = results_file(profile_name, chapter)
    current = load_json(path) if path.exists() else {}
    for key, value in values.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real):
            value = round(float(value), 4)
        current[key] = value
    save_json(path, current)
    return current


def read_results(profile_name: str, chapter: str) -> dict:
    path = results_file(profile_name, chapter)
    return load_json(path) if path.exists() else {}
