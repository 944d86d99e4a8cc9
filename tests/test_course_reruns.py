"""Re-runs of the course replace what its chapters wrote themselves: chapter 05's predictions
after a retrain (a new `final.pt` in the same place), while a folder the chapter did not write
stays protected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from test_predict import _red_blue, _segmenter

from depthg_lib import predict as pr
from depthg_lib.config import REPO_ROOT, load_profile
from depthg_lib.errors import DepthGError
from depthg_lib.io import sha256_file


def test_an_owner_replaces_its_own_predictions_not_a_folder_it_did_not_write(monkeypatch,
                                                                            tmp_path):
    Image.fromarray(_red_blue(16, 16)).save(tmp_path / "a.png")
    before, after = _segmenter(assignment=True), _segmenter(assignment=False)  # a retrain
    mine, theirs = tmp_path / "chapter", tmp_path / "user"

    def predict_with(seg, out, **kwargs):
        monkeypatch.setattr(pr, "load_segmenter", lambda *a, **k: seg)
        return pr.predict_files([tmp_path / "a.png"], out, progress=False, **kwargs)

    predict_with(before, mine, owner="05_evaluate")
    predict_with(after, mine, owner="05_evaluate")  # its own outputs: replaced
    legend = json.loads((mine / "legend.json").read_text())
    assert legend["owner"] == "05_evaluate" and legend["entries"][0]["name"] == "cluster 0"
    assert legend["outputs"] == ["a"] and (mine / "a_label.png").exists()

    other = _segmenter(assignment=True)
    other.checkpoint = tmp_path / "someone_elses.pt"
    predict_with(other, theirs)  # written by hand: no owner
    kept = (theirs / "legend.json").read_text()
    for owner in ("05_evaluate", None):
        with pytest.raises(DepthGError, match="describes the outputs of another checkpoint"):
            predict_with(after, theirs, owner=owner)
    assert (theirs / "legend.json").read_text() == kept
    with pytest.raises(DepthGError, match="other cluster names"):  # another owner's folder
        predict_with(before, mine, owner="another program")
    assert json.loads((mine / "legend.json").read_text()) == legend


def _cell_with(notebook, text: str) -> str:
    cells = json.loads((REPO_ROOT / "notebooks" / notebook).read_text())["cells"]
    found = [c for c in cells if c["cell_type"] == "code" and text in "".join(c["source"])]
    assert len(found) == 1, f"{notebook}: {len(found)} code cells hold {text!r}"
    return "".join(found[0]["source"])


def test_chapter_05_replaces_its_own_predictions_after_a_retrain(tmp_path, monkeypatch):
    """Chapter 05's prediction cell, run as the course runs it (no --force) twice on the same
    run folder with `final.pt` retrained in place between the runs."""
    import matplotlib

    from depthg_lib.data import reader_for_profile, synthscenes

    matplotlib.use("Agg")
    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path / "runs"))
    profile = tmp_path / "tiny.yaml"
    profile.write_text(f"extends: test\ndata_root: {tmp_path / 'data'}\n")
    cfg = load_profile(profile)
    synthscenes.generate(cfg.paths.dataset_dir, n_train=2, n_val=3, size=cfg.synth_size,
                         seed=cfg.synth_seed, progress=False)
    checkpoint = cfg.paths.train_dir / "checkpoints" / "final.pt"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(pr.DEFAULT_CHECKPOINT, checkpoint)
    reader = reader_for_profile(cfg)
    cell = _cell_with("05_evaluate.ipynb", "predict_files(")
    scope = dict(cfg=cfg, paths=cfg.paths, checkpoint=checkpoint, reader=reader,
                 val_names=reader.names("val"), device="cpu", force=False)
    exec(cell, dict(scope))
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    saved["step"] = int(saved["step"]) + 1  # chapter 04 ran again: another final.pt, same place
    torch.save(saved, checkpoint)
    exec(cell, dict(scope))
    legend = json.loads((cfg.paths.eval_dir / "predictions" / "legend.json").read_text())
    assert legend["checkpoint_sha256"] == sha256_file(checkpoint)
    assert len(legend["outputs"]) == 3
