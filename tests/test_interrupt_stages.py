"""A forced stage interrupted part-way leaves the outputs of its last complete run, with the
record that describes them: the kNN stage writes the new neighbours beside the old file and
records their settings only once they replaced it."""

from __future__ import annotations

import pytest
from test_knn import _profile, cropped  # noqa: F401  (cropped is a fixture)

from depthg_lib import knn as knn_mod
from depthg_lib.knn import knn_record_path, run_knn_stage


def test_an_interrupted_forced_remine_keeps_the_old_neighbours_and_their_record(
        cropped, monkeypatch):  # noqa: F811
    profile = _profile(cropped)
    out = run_knn_stage(profile, device="cpu", progress=False)
    before, record = out.read_bytes(), knn_record_path(profile).read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the neighbours are being mined

    monkeypatch.setattr(knn_mod, "topk_neighbours", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_knn_stage(_profile(cropped, knn_store=5), force=True, device="cpu", progress=False)
    assert out.read_bytes() == before
    assert knn_record_path(profile).read_text() == record
    assert not list(out.parent.glob("*.tmp*"))
    monkeypatch.undo()
    stamp = out.stat().st_mtime_ns
    assert run_knn_stage(profile, device="cpu", progress=False) == out  # still valid: kept
    assert out.stat().st_mtime_ns == stamp
