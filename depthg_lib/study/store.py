"""The study's store: one row per finished run or score, written as soon as it exists, so that
an interrupted study resumes where it stopped; a row's identity is a digest of what made it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..config import Profile
from ..io import load_json, save_json, save_npz

STORE_VERSION = 1


class Store:
    """`store.json`: one row per finished (kind, name, knob, seed) with its identity; the
    per-image matrices of a row live in `hists/<id>.npz`. Written after every row."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "store.json"
        data = load_json(self.path) if self.path.exists() else {}
        if data and data.get("version") != STORE_VERSION:
            data = {}
        self.rows: list[dict] = data.get("rows", [])

    def find(self, identity: str) -> dict | None:
        return next((r for r in self.rows if r["id"] == identity), None)

    def add(self, row: dict, hists: dict[str, np.ndarray]) -> dict:
        if hists:
            save_npz(self.folder / "hists" / f"{row['id']}.npz", **hists)
        self.rows = [r for r in self.rows if r["id"] != row["id"]] + [row]
        save_json(self.path, {"version": STORE_VERSION, "rows": self.rows})
        return row

    def hists(self, row: dict) -> dict[str, np.ndarray]:
        with np.load(self.folder / "hists" / f"{row['id']}.npz") as z:
            return {k: z[k] for k in z.files}


def profile_values(profile: Profile) -> dict:
    """A profile's settings as part of a row's identity: not the study's own design (its
    knobs, arms, seeds, candidates), so that growing the study keeps the rows it has."""
    return {k: v for k, v in dataclasses.asdict(profile).items()
            if k != "source" and not k.startswith("study_") and k != "ablation_seeds"}
