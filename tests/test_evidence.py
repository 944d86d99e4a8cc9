"""Chapter 07's evidence: recorded numbers read with their baselines, the released objective's
equivalent shift against the trainer's own schedule, FPS's transposed reads, the papers' rows."""

from __future__ import annotations

import re

import pytest
import torch

from depthg_lib import evidence
from depthg_lib.config import load_profile
from depthg_lib.errors import DepthGError
from depthg_lib.released import paper_numbers
from depthg_lib.results import record
from depthg_lib.train.trainer import Schedule


def test_depth_schedule_follows_the_trainer():
    p = load_profile("test").replace(depth_decay_every=3, depth_decay_factor=0.5)
    sch = Schedule.start(p)
    for step in range(12):
        assert evidence.depth_schedule(p, step) == pytest.approx(
            (sch.weight_depth, sch.shift_depth)), step
        sch.advance(step, p)


def test_effective_shift_gives_the_released_gradient():
    g = torch.Generator().manual_seed(0)
    c = (torch.rand(50, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    f = torch.rand(50, generator=g, dtype=torch.float64)
    w_i, s_i, w_d, s_d = 0.95, 0.39, 0.09, 0.03
    both = -(w_i * c.clamp(min=0) * (f - s_i) + w_d * c.clamp(min=0) * (1 - s_d)).sum()
    (g1,) = torch.autograd.grad(both, c)
    s = evidence.effective_intra_shift(w_i, s_i, w_d, s_d)
    (g2,) = torch.autograd.grad(-(w_i * c.clamp(min=0) * (f - s)).sum(), c)
    assert torch.allclose(g1, g2) and s < s_i


def test_released_objective_reads_the_profiles():
    city = evidence.released_objective("cityscapes-vitb8")
    p = load_profile("cityscapes-vitb8")
    assert city["sampling"] == p.sampling and city["d_is_one"] == (p.fidelity == "released")
    assert city["shift_first"] < city["shift_last"] <= p.shifts["intra"]
    stego = evidence.released_objective("stego-cityscapes-vitb8")
    assert stego["shift_first"] == stego["shift_last"] == stego["s_intra"]


def _depth_at(cells, hw=(4, 4)):
    """A depth map, the feature grid's size, 0 everywhere but 1 at `cells`: FPS starts at
    cell (0, 0) (depth 0: the origin of the point cloud), then takes the cells with depth
    (far from the origin) before any other (all at the origin, distance 0 from the start)."""
    depth = torch.zeros(1, 1, *hw)
    for r, c in cells:
        depth[0, 0, r, c] = 1.0
    return depth


def test_fps_read_overlap_on_a_hand_counted_case():
    """FPS chooses (0,0), (0,1), (0,2), (3,0) on a 4×4 grid (n = 2). The released sampler
    reads cell (r, c) at row c·3/4, column r·3/4 (transposed, scaled by (h−1)/h, docs/method.md
    §7.1), rounded: (0,0), (1,0), (2,0), (0,2) — two of them chosen, so the overlap is 1/2.
    (Read without the transposition it would be 3/4.)"""
    depth = _depth_at([(0, 1), (0, 2), (3, 0)])
    assert evidence.fps_read_overlap(depth, (4, 4), 2) == 0.5
    assert evidence.fps_read_overlap(depth[0, 0].numpy(), (4, 4), 2) == 0.5  # (H, W) arrays too


def test_fps_read_overlap_is_one_when_fps_takes_every_cell():
    assert evidence.fps_read_overlap(_depth_at([(1, 2), (2, 2)], (3, 3)), (3, 3), 3) == 1.0


def test_findings_read_records_beside_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path))
    record("test", "05_evaluate", unsupervised_miou=20.0, unsupervised_acc=50.0,
           linear_miou=30.0, linear_acc=60.0, kmeans_miou=25.0, kmeans_acc=48.0,
           majority_miou=3.0, majority_acc=31.0)
    record("test", "04_train_depthg", fps_thing_share=0.2, random_thing_share=0.25,
           thing_pixel_share=0.24)
    head = next(f for f in evidence.course_findings("test") if "cluster probe" in f.measure)
    assert "below k-means" in head.reading and "-5.0 points" in head.reading
    found = {f.chapter: f for f in evidence.course_findings("test")}
    assert "no more points on things" in found["04"].reading
    assert found["01"].value == "not recorded" and "--only 01" in found["01"].reading
    table = evidence.findings_markdown(evidence.course_findings("test"))
    assert table.count("\n") == 2 + 6 - 1  # header, rule, 6 findings


def test_paper_rows_come_from_the_profiles():
    rows = {r["profile"]: r for r in evidence.paper_rows() if r["kind"] == "paper"}
    city = paper_numbers("cityscapes-vitb8")
    assert rows["cityscapes-vitb8"]["unsup_miou"] == city["unsupervised"]["miou"]
    assert rows["cityscapes-vitb8"]["source"] == city["source"]
    assert rows["stego-cocostuff27-vits8"]["method"] == "STEGO"
    assert "test" not in rows
    md = evidence.paper_markdown([rows["cityscapes-vitb8"]])
    assert "DepthG** (paper)" in md and f"/ {city['unsupervised']['miou']:.1f} |" in md
    assert "[leonsick/depthg#2](https://github.com/leonsick/depthg/issues/2)" in md  # a link


def test_rows_beside_a_paper_keep_their_own_source_and_decimals():
    rows = [r for r in evidence.paper_rows() if r["profile"] == "cityscapes-vitb8"]
    others = paper_numbers("cityscapes-vitb8")["others"]
    assert [r["kind"] for r in rows] == ["paper"] + ["other"] * len(others)
    assert [r["source"] for r in rows[1:]] == [o["source"] for o in others]
    assert all(r["dataset"] == "Cityscapes-27" and r["backbone"] == "DINO ViT-B/8" for r in rows)
    md = evidence.paper_markdown(rows)
    released = others[0]["unsupervised"]
    assert f"| {released['acc']:.2f} / {released['miou']:.2f} |" in md  # 81.41, not 81.4
    lines = md.splitlines()[2:]
    assert "(paper)" in lines[0]  # the paper's own row first, the rows beside it after


def test_an_other_row_without_source_is_one_clear_error(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("extends: demo\npaper:\n  source: X, Table 9\n  others:\n"
                   "    - method: a baseline\n      unsupervised: {miou: 12}\n")
    with pytest.raises(DepthGError, match=r"paper.others\[0\] must be a mapping with a method "
                                          "and a source"):
        paper_numbers(str(bad))


def test_course_rows_read_chapter_05_and_the_study(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHG_RUNS", str(tmp_path))
    record("test", "05_evaluate", unsupervised_miou=20.0, unsupervised_acc=50.0,
           linear_miou=30.0, linear_acc=60.0, kmeans_miou=25.0, kmeans_acc=48.0)
    study = {"knob": {"name": "camouflage", "settings": ["0"]}, "backbone": {"name": "vit"},
             "arms": {"depthg-corrected": {"0": {"unsup": [20.0, 22.0], "linear": [30.0, 34.0]}}},
             "arm_labels": {"depthg-corrected": "DepthG"},
             "baselines_per_seed": {"kmeans_raw_train_fit": {"0": [27.0, 29.0]}}}
    rows = evidence.course_rows("test", study)
    assert [r["method"] for r in rows][0].startswith("DepthG head")
    assert rows[0]["unsup_acc"] == 50.0 and rows[1]["unsup_miou"] == 25.0
    assert rows[2]["unsup_miou"] == 21.0 and rows[2]["linear_miou"] == 32.0
    assert rows[3]["unsup_miou"] == 28.0 and rows[3]["linear_miou"] is None
    assert evidence.course_markdown(rows).count("\n") == 1 + len(rows)


def test_the_papers_table_has_no_word_too_long_for_the_book_column():
    """Every source's web address shows as a short link (an issue, a repository, a host): the
    table's widest words set its narrowest width, and chapter 07's must fit the book's column."""
    md = evidence.paper_markdown(evidence.paper_rows())
    shown = re.sub(r"\]\([^)]*\)", "]", md)  # a link's address is not on the page
    words = [w for line in shown.splitlines()[2:] for w in line.split()]
    assert max(map(len, words)) <= 24, max(words, key=len)
    assert "[paperswithcode.com](https://paperswithcode.com/paper/" in md
