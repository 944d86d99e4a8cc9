"""What the course's evidence says (chapter 07), every number read from a file: the chapters'
recorded numbers beside their baselines, what the released objective amounts to (method.md §6.1,
§8), how much of FPS the released sampler reads (§7.1), the papers' numbers beside the course's."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import Profile, available_profiles, load_profile
from .released import paper_numbers
from .results import read_results
from .sampling import fps_cells, fps_coords, one_depth_map, read_positions


@dataclass(frozen=True)
class Finding:
    """One recorded number beside its baseline: what was measured, where, and how it reads."""

    chapter: str
    measure: str
    value: str
    baseline: str
    reading: str


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _premise(r: dict) -> list[Finding]:
    """Chapter 01: how well depth, features and both tell 'same class' for pixel pairs."""
    feat, depth = r["premise_feature_auroc"], r["premise_depth_auroc"]
    gain = r.get("premise_depth_gain")
    return [Finding(
        "01", "same-class AUROC of pixel pairs: features / depth / gain of both over features",
        f"{feat:.3f} / {depth:.3f} / {'—' if gain is None else f'{gain:+.3f}'}",
        "0.5 = no information",
        f"depth says 'same class' {'better' if depth > 0.5 else 'no better'} than chance, and "
        f"{'less' if depth < feat else 'more'} than the features do; the gain is what it adds "
        "to them")]


def _knn_purity(r: dict) -> list[Finding]:
    """Chapter 03: how often kNN positives share their majority class, against chance."""
    kp, ch = r["neighbour_purity_other_images"], r.get("chance_purity_other_images")
    return [Finding("03", "kNN pairs (other images) sharing their majority class",
                    f"{kp:.2f}", f"random pairs {_fmt(ch, 2)}",
                    "kNN positives share a class "
                    f"{'more' if ch is None or kp > ch else 'no more'} often than chance")]


def _fps_on_things(r: dict) -> list[Finding]:
    """Chapter 04: the share of FPS's training points on things, against random points."""
    fps, rnd = r["fps_thing_share"], r["random_thing_share"]
    return [Finding("04", "share of S×S training points on things: FPS (corrected)",
                    f"{fps:.1%}", f"random points {rnd:.1%} (thing pixels "
                    f"{r.get('thing_pixel_share', float('nan')):.1%})",
                    f"FPS puts {'more' if fps > rnd else 'no more'} points on things "
                    "than random points")]


def _head_vs_kmeans(r: dict) -> list[Finding]:
    """Chapter 05: the head's cluster and linear probes, against k-means on raw features."""
    head, km = r["unsupervised_miou"], r["kmeans_miou"]
    return [Finding("05", "DepthG head, cluster probe: mIoU / Acc %",
                    f"{head:.1f} / {r['unsupervised_acc']:.1f}",
                    f"k-means on raw features {km:.1f} / {r['kmeans_acc']:.1f}; "
                    f"majority class {_fmt(r.get('majority_miou'))} / "
                    f"{_fmt(r.get('majority_acc'))}",
                    f"the head is {'above' if head > km else 'below'} k-means on its own "
                    f"input in mIoU ({head - km:+.1f} points, one seed)"),
            Finding("05", "DepthG head, linear probe (uses labels): mIoU / Acc %",
                    f"{r['linear_miou']:.1f} / {r['linear_acc']:.1f}",
                    f"cluster probe {head:.1f} / {r['unsupervised_acc']:.1f}",
                    "the gap is what the codes hold that clustering does not find")]


def _depthg_vs_stego(r: dict) -> list[Finding]:
    """Chapter 06: the reduced study's DepthG against STEGO, mean over seeds."""
    dg, st = r["miou_depthg-corrected"], r["miou_stego-corrected"]
    return [Finding("06", "reduced study, unsupervised mIoU: DepthG (corrected)",
                    f"{dg:.1f}", f"STEGO {st:.1f}; k-means on raw features (train fit) "
                    f"{_fmt(r.get('miou_kmeans_raw_train_fit'))}",
                    f"DepthG − STEGO {dg - st:+.1f} points (mean over seeds; its "
                    "interval is in chapter 06)")]


# chapter → (what it measures; its reader above, which raises KeyError until the chapter has run)
_READERS = {"01_generate_depth": ("premise (same-class AUROC)", _premise),
            "03_mine_knn": ("kNN purity", _knn_purity),
            "04_train_depthg": ("FPS share on things", _fps_on_things),
            "05_evaluate": ("head vs k-means", _head_vs_kmeans),
            "06_ablation": ("DepthG vs STEGO", _depthg_vs_stego)}


def course_findings(profile: Profile | str) -> list[Finding]:
    """The chapters' recorded numbers for `profile`, each beside its baseline: which side it is
    on, not whether that beats the noise (chapter 06)."""
    name = load_profile(profile).name
    out: list[Finding] = []
    for chapter, (measure, read) in _READERS.items():
        try:
            out += read(read_results(name, chapter))
        except KeyError:
            out.append(Finding(chapter[:2], measure, "not recorded", "—", "run `python -m "
                               f"depthg_lib.course --profile {name} --only {chapter[:2]}`"))
    return out


def _table(header: str, align: str, rows) -> str:
    """A Markdown table: `header` and `align` are the cells of its first two lines."""
    return "\n".join([f"| {header} |", f"|{align}|"] + [f"| {' | '.join(r)} |" for r in rows])


def findings_markdown(findings: Sequence[Finding]) -> str:
    """A Markdown table of `course_findings`."""
    return _table("ch. | measure | value | baseline | reading", "---|---|---:|---|---",
                  ((f.chapter, f.measure, f.value, f.baseline, f.reading) for f in findings))


def effective_intra_shift(w_intra: float, s_intra: float, w_depth: float, s_depth: float) -> float:
    """The intra shift that intra + depth term amount to when D ≡ 1 (released, §6.1):
    w_i·(F − s_i) + w_d·(1 − s_d) = w_i·(F − s′) with s′ = s_i − w_d(1 − s_d)/w_i."""
    return s_intra - w_depth * (1.0 - s_depth) / w_intra


def depth_schedule(profile: Profile, step: int) -> tuple[float, float]:
    """(w_depth, s_depth) at step `step`, as the trainer decays them after every step k > 0
    with k % `depth_decay_every` == 0."""
    f = profile.depth_decay_factor ** (max(step - 1, 0) // profile.depth_decay_every)
    return profile.weight_depth * f, profile.shift_depth * f


def released_objective(profile: Profile | str) -> dict:
    """What a profile trains as released, and the equivalent intra shift s′ at its first and
    last step (meaningful with D ≡ 1)."""
    p = load_profile(profile)
    w_i, s_i = p.weights["intra"], p.shifts["intra"]
    first, last = depth_schedule(p, 0), depth_schedule(p, p.steps - 1)
    return {"fidelity": p.fidelity, "sampling": p.sampling, "steps": p.steps, "s_intra": s_i,
            "d_is_one": p.use_depth and p.fidelity == "released",
            "decay_factor": p.depth_decay_factor,
            "shift_first": effective_intra_shift(w_i, s_i, *first) if p.use_depth else s_i,
            "shift_last": effective_intra_shift(w_i, s_i, *last) if p.use_depth else s_i}


def fps_read_overlap(depth: np.ndarray | torch.Tensor, grid_hw: Sequence[int], n: int) -> float:
    """Share of the n×n points the released sampler reads (nearest grid cell) that FPS chose:
    it passes (row, col) as (x, y), mirroring each cell about the diagonal (method.md §7.1)."""
    grid = (int(grid_hw[0]), int(grid_hw[1]))
    chosen = {tuple(c) for c in fps_cells(depth, grid, n, "released").tolist()}
    coords = fps_coords(one_depth_map(depth), grid, n, "released")
    read = np.rint(read_positions(coords, grid)).astype(int)
    return float(np.mean([tuple(r) in chosen for r in read.tolist()]))


_DATASETS = {"cityscapes": "Cityscapes", "cocostuff": "COCO-Stuff", "cocostuff27": "COCO-Stuff",
             "potsdam": "Potsdam", "synthscenes": "SynthScenes"}
_NUMBERS = ("unsup_acc", "unsup_miou", "linear_acc", "linear_miou")


def dataset_name(p: Profile) -> str:
    """"Cityscapes-27": the dataset with its number of classes, as the papers name it."""
    return f"{_DATASETS.get(p.dataset, p.dataset)}-{p.n_classes}"


def backbone_name(p: Profile) -> str:
    """"DINO ViT-B/8" for `vit_base_patch8_224.dino`; the timm name otherwise."""
    name = p.backbone
    match = re.search(r"vit_(small|base)_patch([^_]*)", name)
    if match is None:
        return name
    family = "DINO" if name.endswith(".dino") else name.rsplit(".", 1)[-1]
    return f"{family} ViT-{match.group(1)[0].upper()}/{match.group(2)}"


def paper_rows() -> list[dict]:
    """Every shipped profile's `paper:` block as rows (kind "paper"; None = not sourced),
    each followed by the block's `others` (kind "other": baselines, released checkpoints)."""
    rows = []
    for name in available_profiles():
        block = paper_numbers(name)
        if block is None:
            continue
        p = load_profile(name)
        where = {"profile": name, "dataset": dataset_name(p), "backbone": backbone_name(p)}
        own = {"method": "DepthG" if p.use_depth else "STEGO", "kind": "paper", **block}
        for row in [own] + [{"kind": "other", **other} for other in block["others"]]:
            u, lin = row["unsupervised"], row["linear"]
            rows.append({**_row(where, row["method"], u["acc"], u["miou"], lin["acc"], lin["miou"]),
                         "kind": row["kind"], "crf": row["crf"], "source": row["source"]})
    return rows


def sourced(rows: Sequence[dict]) -> list[dict]:
    """The rows that hold at least one number."""
    return [r for r in rows if any(r[k] is not None for k in _NUMBERS)]


def paper_markdown(rows: Sequence[dict]) -> str:
    """A Markdown table of `paper_rows`, grouped by dataset and backbone (— = not sourced)."""
    order = sorted(rows, key=lambda r: (r["dataset"], r["backbone"], r["kind"] != "paper",
                                        r["method"] != "DepthG"))
    return _table(_HEADER + "source", _ALIGN, (_cells(r, _as_given, _method(r), _link(r["source"]))
                                               for r in order))


_HEADER = "dataset · backbone | method | unsupervised Acc / mIoU | linear Acc / mIoU | "
_ALIGN = "---|---|---:|---:|---"


def _cells(r: dict, fmt, method: str, source: str) -> tuple[str, ...]:
    """One row of `paper_markdown` or `course_markdown`."""
    return (f"{r['dataset']} · {r['backbone']}", method,
            f"{fmt(r['unsup_acc'])} / {fmt(r['unsup_miou'])}",
            f"{fmt(r['linear_acc'])} / {fmt(r['linear_miou'])}", source)


def _method(r: dict) -> str:
    """The method of a paper row, bold for the paper's own, with its CRF setting."""
    crf = {True: ", with CRF", False: ", without CRF", None: ""}[r["crf"]]
    if r["kind"] == "paper":
        return f"**{r['method']}** (paper{crf})"
    return r["method"] + (f" ({crf[2:]})" if crf else "")


def _as_given(x: float | None) -> str:
    """A reported number with the decimals its source gives (81.6, 22.44), — if none."""
    return "—" if x is None else f"{x:.2f}".removesuffix("0")


def _link(source: str) -> str:
    """A source with its web addresses as short links (`leonsick/depthg#2`, or the host), so
    that the papers' table fits the book's column."""
    def short(match: re.Match) -> str:
        url = match.group(1)
        issue = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)/(?:issues|pull)/(\d+)", url)
        repo = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)/?", url)
        text = (f"{issue.group(1)}#{issue.group(2)}" if issue else repo.group(1) if repo
                else url.split("//", 1)[-1].split("/", 1)[0])
        return f"[{text}]({url})"
    return re.sub(r"(https?://[^\s),]+)", short, source)


def course_rows(profile: Profile | str, study: dict | None = None) -> list[dict]:
    """This course's numbers in the papers' units (%): chapter 05's head and k-means for
    `profile`, and the study's arms (mean over seeds; mIoU only)."""
    p = load_profile(profile)
    r = read_results(p.name, "05_evaluate")
    here = {"dataset": dataset_name(p), "backbone": p.backbone,
            "source": "chapter 05 of this run (one seed)"}
    rows = []
    if "unsupervised_miou" in r:
        rows.append(_row(here, "DepthG head (chapter 05)", r.get("unsupervised_acc"),
                                r["unsupervised_miou"], r.get("linear_acc"), r.get("linear_miou")))
    if "kmeans_miou" in r:
        rows.append(_row(here, "backbone features, no head: k-means (chapter 05)",
                                r.get("kmeans_acc"), r["kmeans_miou"]))
    per_seed = (study or {}).get("baselines_per_seed", {})
    for knob in study["knob"]["settings"] if study else ():
        here = {"dataset": f"SynthScenes ({study['knob']['name']} {knob})",
                "backbone": study.get("backbone", {}).get("name", "?")}
        for arm in ("depthg-corrected", "stego-corrected", "depthg-released", "stego-released"):
            v = study.get("arms", {}).get(arm, {}).get(knob, {})
            if v.get("unsup"):
                here["source"] = f"study, mean of {len(v['unsup'])} seeds"
                rows.append(_row(here, study.get("arm_labels", {}).get(arm, arm), None,
                                        _mean(v["unsup"]), None, _mean(v["linear"])))
        km = per_seed.get("kmeans_raw_train_fit", {}).get(knob)
        lin = per_seed.get("linear_raw", {}).get(knob)
        if km or lin:
            here["source"] = f"study, mean of {len(km or lin)} seeds"
            rows.append(_row(here, "backbone features, no head: k-means (train fit) / "
                                    "linear probe", None, _mean(km), None, _mean(lin)))
    return rows


def _mean(values) -> float | None:
    return float(np.mean(values)) if values else None


def _row(where, method: str, unsup_acc, unsup_miou, linear_acc=None, linear_miou=None) -> dict:
    return {**where, "method": method, "unsup_acc": unsup_acc, "unsup_miou": unsup_miou,
            "linear_acc": linear_acc, "linear_miou": linear_miou}


def course_markdown(rows: Sequence[dict]) -> str:
    """A Markdown table of `course_rows`, in the columns of `paper_markdown`."""
    return _table(_HEADER + "from", _ALIGN,
                  (_cells(r, _fmt, r["method"], r["source"]) for r in rows))


def relations(rows: Sequence[dict]) -> list[str]:
    """Per dataset and backbone, each row's unsupervised mIoU minus the raw features' ("no
    head") row and minus the paper's own: comparisons that hold across datasets."""
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        by_pair.setdefault((r["dataset"], r["backbone"]), []).append(r)
    out = []
    for (dataset, backbone), group in by_pair.items():
        scored = sorted((r for r in group if r["unsup_miou"] is not None),
                        key=lambda r: r.get("kind") != "paper")
        raw = next((r for r in scored if "no head" in r["method"]), None)
        paper = next((r for r in scored if r.get("kind") == "paper"), None)
        for r in scored:
            if raw is not None and r is not raw:
                out.append(f"{dataset} · {backbone}: {r['method']} minus the raw features "
                           f"without a head: {r['unsup_miou'] - raw['unsup_miou']:+.1f} "
                           "points of unsupervised mIoU")
            if paper is not None and r is not paper and r is not raw:
                out.append(f"{dataset} · {backbone}: {r['method']} minus the paper's own row: "
                           f"{r['unsup_miou'] - paper['unsup_miou']:+.2f} points of "
                           "unsupervised mIoU")
    return out


def objective_reading(o: dict) -> str:
    """In words, what `released_objective`'s s′ schedule amounts to for one profile."""
    if not o["d_is_one"]:
        return "the depth term carries depth here (D varies): no equivalent shift"
    moved = o["shift_last"] - o["shift_first"]
    parts = [f"s′ starts {o['s_intra'] - o['shift_first']:.3f} below s_intra"]
    if o["shift_first"] < 0:
        parts.append("below 0 at first — the collapse regime of exercise 04.3's toy, where "
                     "nearly every pair of an image is pulled together")
    if abs(moved) < 1e-6:
        parts.append(f"and stays there for all {o['steps']} steps (decay factor "
                     f"{o['decay_factor']:g}): a permanent lower intra shift, not a warm-up")
    else:
        parts.append(f"and climbs back by {moved:.3f} to {o['shift_last']:.3f} by the last "
                     f"step (decay factor {o['decay_factor']:g}): a warm-up of the intra shift")
    return ", ".join(parts)
