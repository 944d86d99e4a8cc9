"""Key numbers a chapter reports, collected by the course runner into `summary.json`."""

from __future__ import annotations

import numbers

from . import config
from .io import load_json, save_json


def profile_name(profile) -> str:
    """The name of a profile given as its name, its YAML file (as the course passes a profile
    outside the library) or the `Profile`."""
    if isinstance(profile, config.Profile) or str(profile).endswith((".yaml", ".yml")):
        return config.load_profile(profile).name
    return str(profile)


def results_file(profile: str, chapter: str):
    return config.runs_root() / profile_name(profile) / "results" / f"{chapter}.json"


def record(profile: str, chapter: str, **values) -> dict:
    """Merge `values` (numbers, rounded, or short strings) into the chapter's results file."""
    current = read_results(profile, chapter)
    for key, value in values.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real):
            value = round(float(value), 4)
        current[key] = value
    save_json(results_file(profile, chapter), current)
    return current


def read_results(profile: str, chapter: str) -> dict:
    path = results_file(profile, chapter)
    return load_json(path) if path.exists() else {}
