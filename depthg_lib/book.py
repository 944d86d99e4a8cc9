"""The course as a website: one run's executed chapters turned into a static HTML book.

    python -m depthg_lib.book --profile demo            # runs/demo/book/index.html

A Sphinx source folder is assembled in `runs/<profile>/.book/src` (the executed chapters, a
landing page from `book/index.md`, the notes in `docs/`) and built offline, warnings as errors.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from string import Template

from .config import REPO_ROOT, chapters, load_profile
from .errors import DepthGError, run_cli
from .io import load_json

BOOK_DIR = REPO_ROOT / "book"  # conf.py and the landing-page template
DOCS_DIR = REPO_ROOT / "docs"
PIPELINE_FIGURE = REPO_ROOT / "figures" / "pipeline.png"
NOTES = ("method", "reproduction", "benchmarks", "scaling")  # docs/<name>.md, if present
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _first_heading(markdown: str, fallback: str) -> str:
    """The text of the first `# ` heading (a chapter's or note's title in the book)."""
    return next((ln[2:].strip() for ln in markdown.splitlines() if ln.startswith("# ")), fallback)


def check_run(run_dir: Path, names: list[str], profile_name: str) -> dict:
    """The run's summary, once every chapter in `names` ran to the end without a cell raising."""
    rerun = f"make course PROFILE={profile_name}"
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise DepthGError(f"{summary_path} is missing: the profile '{profile_name}' has not been "
                          f"run; `{rerun}` runs it (or `make book PROFILE={profile_name}`, "
                          f"which runs it first)")
    summary = load_json(summary_path)
    for name in names:
        entry = summary.get("notebooks", {}).get(name, {})
        executed = run_dir / f"{name}.ipynb"
        if entry.get("status") == "failed":
            raise DepthGError(f"chapter {name} failed in the run ({entry.get('error', '?')}), "
                              f"see {run_dir / (name + '.failed.ipynb')}; fix it and run "
                              f"`{rerun}` before building the book")
        if entry.get("status") != "ok" or not executed.exists():
            raise DepthGError(f"{executed} has not finished (status "
                              f"'{entry.get('status', 'not run')}' in {summary_path}); "
                              f"`{rerun}` runs it")
    return summary


def run_date(run_dir: Path, names: list[str]) -> str:
    """When the last chapter of the run finished (papermill's record in the notebooks)."""
    meta = [json.loads((run_dir / f"{n}.ipynb").read_text()).get("metadata", {}) for n in names]
    ends = [m.get("papermill", {}).get("end_time") for m in meta]
    ends = [datetime.fromisoformat(end) for end in ends if end]
    return max(ends).strftime("%Y-%m-%d %H:%M UTC") if ends else "date not recorded"


def for_the_page(notebook: dict) -> dict:
    """Widget outputs (tqdm's bars) replaced by the final text a static page can show
    (`name: 100%|██████████| 8/8 [00:01<00:00, 6.1it/s]`); papermill's "# Parameters" hidden."""
    state = notebook.get("metadata", {}).pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is not None:
                text = _widget_text(view.get("model_id", ""), state)
                if text is None:
                    text = "".join(output["data"].get("text/plain", ""))
                output["data"] = {"text/plain": text}
    return notebook


def _widget_text(model_id: str, state: dict) -> str | None:
    model = state.get(model_id.removeprefix("IPY_MODEL_"))
    if model is None:
        return None
    values = model.get("state", {})
    kind = model.get("model_name", "")
    if kind.endswith("BoxModel"):
        parts = [_widget_text(child, state) for child in values.get("children", [])]
        return "".join(p for p in parts if p) if any(parts) else None
    if kind in ("HTMLModel", "LabelModel"):
        text = re.sub(r"<[^>]+>", "", str(values.get("value", "")))
        return html.unescape(text).replace("\u2007", " ")
    if kind in ("FloatProgressModel", "IntProgressModel"):
        top = float(values.get("max", 0) or 0)
        filled = round(10 * float(values.get("value", 0)) / top) if top > 0 else 0
        return "|" + "█" * filled + " " * (10 - filled) + "|"
    return None


def _write_if_changed(path: Path, data: bytes) -> Path:
    """Keep the file's time stamp when nothing changed, so that Sphinx re-reads only what did."""
    if not (path.exists() and path.read_bytes() == data):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path


# the landing page's names for the numbers chapters record (results.record); others: the key
KEY_LABELS = {
    "train_images": "training images", "mae": "depth MAE", "spearman": "depth Spearman ρ",
    "synth_mae": "embedded depth MAE", "synth_spearman": "embedded depth Spearman ρ",
    "premise_feature_auroc": "features AUROC", "premise_depth_auroc": "depth AUROC",
    "premise_depth_gain": "depth adds (AUROC)", "train_crops": "training crops",
    "val_crops": "validation crops", "neighbour_purity": "kNN purity",
    "neighbour_purity_other_images": "kNN purity, other images",
    "chance_purity_other_images": "chance purity, other images",
    "same_image_share": "neighbours from the same image", "val_linear_miou": "val. linear mIoU",
    "val_cluster_miou": "val. cluster mIoU", "fps_thing_share": "FPS points on things",
    "random_thing_share": "random points on things", "thing_pixel_share": "thing pixels",
    "unsupervised_miou": "cluster probe mIoU", "unsupervised_acc": "cluster probe Acc",
    "linear_miou": "linear probe mIoU", "linear_acc": "linear probe Acc",
    "kmeans_miou": "k-means mIoU", "kmeans_acc": "k-means Acc",
    "majority_miou": "majority-class mIoU", "majority_acc": "majority-class Acc",
    "head_minus_kmeans": "head − k-means (mIoU)", "miou_kmeans_raw_train_fit": "k-means mIoU",
    "released_fps_read_overlap": "released FPS reads its choices",
    "cityscapes_shift_first": "Cityscapes s′ at step 0",
    "miou_stego-corrected": "STEGO mIoU", "miou_depthg-corrected": "DepthG mIoU",
}


def key_number(key: str, value) -> str:
    """`label value` for the landing page: a share as a percentage, scores (in %) with one
    decimal, smaller numbers with three significant digits, counts and words as they are."""
    label = KEY_LABELS.get(key) or key.replace("_", " ").replace("miou", "mIoU")
    if not isinstance(value, float):
        return f"{label} {value}"
    if key.endswith(("_share", "_overlap")):
        return f"{label} {value:.1%}"
    if abs(value) >= 10 or "miou" in key or key.endswith(("_acc", "_minus_kmeans")):
        return f"{label} {value:.1f}"
    return f"{label} {value:.3g}" if abs(value) >= 0.01 else f"{label} {value:+.4f}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def landing_page(summary: dict, titles: dict[str, str], notes: dict[str, str], *,
                 profile_name: str, date: str, template: Path = BOOK_DIR / "index.md") -> str:
    """The landing page's MyST source: the pipeline figure, this run, the chapter table."""
    rows = ["| chapter | seconds | key numbers |", "|---|---:|---|"]
    for name, title in titles.items():
        entry = summary.get("notebooks", {}).get(name, {})
        numbers = ", ".join(key_number(k, v) for k, v in entry.get("results", {}).items())
        rows.append(f"| [{_cell(title)}](chapters/{name}.ipynb) | {entry.get('seconds', '')} "
                    f"| {_cell(numbers)} |")
    notes_section = ""
    toctrees = "```{toctree}\n:hidden:\n:caption: Chapters\n\n"
    toctrees += "\n".join(f"chapters/{name}" for name in titles) + "\n```\n"
    if notes:
        notes_section = "## Notes\n\n" + "\n".join(
            f"- [{_cell(title)}](notes/{name}.md)" for name, title in notes.items())
        toctrees += "\n```{toctree}\n:hidden:\n:caption: Notes\n\n"
        toctrees += "\n".join(f"notes/{name}" for name in notes) + "\n```\n"
    seconds = sum(summary.get("notebooks", {}).get(n, {}).get("seconds", 0) for n in titles)
    minutes, rest = divmod(round(seconds), 60)
    duration = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return Template(template.read_text()).substitute(
        profile=profile_name, machine=summary.get("machine", "not recorded"),
        device=summary.get("device", "?"), date=date, n_chapters=len(titles),
        duration=duration, chapter_table="\n".join(rows), notes_section=notes_section,
        toctrees=toctrees)


def html_anchors_as_targets(text: str) -> str:
    """`<a id="s6-1"></a>` lines (anchors that work on a forge's Markdown view) become MyST
    targets `(s6-1)=`, so that `[§6.1](#s6-1)` resolves in the book too."""
    return re.sub(r'^<a (?:id|name)="([\w.-]+)"></a>[ \t]*$', r"(\1)=", text, flags=re.MULTILINE)


def assemble(run_dir: Path, src: Path, names: list[str], profile_name: str,
             docs_dir: Path = DOCS_DIR, figure: Path = PIPELINE_FIGURE) -> list[Path]:
    """Write the Sphinx source folder; returns the files it holds."""
    summary = check_run(run_dir, names, profile_name)
    written = []
    titles = {}
    for name in names:
        notebook = for_the_page(json.loads((run_dir / f"{name}.ipynb").read_text()))
        cells = [c for c in notebook.get("cells", []) if c.get("cell_type") == "markdown"]
        titles[name] = _first_heading("\n".join("".join(c.get("source", "")) for c in cells), name)
        written.append(_write_if_changed(src / "chapters" / f"{name}.ipynb", json.dumps(
            notebook, indent=1, ensure_ascii=False).encode()))
    notes = {}
    for name in NOTES:
        note = docs_dir / f"{name}.md"
        if note.exists():
            text = html_anchors_as_targets(note.read_text())
            notes[name] = _first_heading(text, name)
            written.append(_write_if_changed(src / "notes" / f"{name}.md", text.encode()))
    if not figure.exists():
        raise DepthGError(f"{figure} is missing: the landing page shows it; restore it with "
                          f"`git checkout -- {figure.relative_to(REPO_ROOT)}`")
    written.append(_write_if_changed(src / "figures" / figure.name, figure.read_bytes()))
    index = landing_page(summary, titles, notes, profile_name=profile_name,
                         date=run_date(run_dir, names))
    written.append(_write_if_changed(src / "index.md", index.encode()))
    for stale in [p for p in src.rglob("*") if p.is_file() and p not in written]:
        stale.unlink()  # a chapter or note that is gone must not stay in the book
    return written


def build_book(run_dir: Path, names: list[str], profile_name: str, docs_dir: Path = DOCS_DIR,
               figure: Path = PIPELINE_FIGURE) -> Path:
    """Build the book of the run in `run_dir` into `run_dir/book`, replacing it at once."""
    out_dir = run_dir / "book"
    work = run_dir / ".book"
    assemble(run_dir, work / "src", names, profile_name, docs_dir=docs_dir, figure=figure)
    warnings = work / "warnings.txt"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK_DIR),
               "-d", str(work / "doctrees"), "-W", "--keep-going", "-q", "-w", str(warnings),
               str(work / "src"), str(work / "html")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (warnings.read_text() if warnings.exists() else "").splitlines()
                 if ln.strip()] or (done.stderr or done.stdout).strip().splitlines()[-15:]
        shown = "\n  ".join(lines[:15])
        for copies, original in (("chapters", run_dir), ("notes", docs_dir)):  # the files to edit
            for folder in ((work / "src").resolve() / copies, work / "src" / copies):
                shown = shown.replace(f"{folder}/", f"{original}/")
        raise DepthGError(f"the book of {run_dir} did not build: {len(lines)} warning(s) or "
                          f"error(s) (warnings count as errors; all in {warnings}); fix the "
                          f"chapter in notebooks/ or the note in docs/ and run `make book "
                          f"PROFILE={profile_name}` again:\n  {shown}")
    publish, old = work / "publish", work / "old"  # html/ stays for the next build
    shutil.rmtree(publish, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(work / "html", publish, ignore=shutil.ignore_patterns(".buildinfo"))
    if out_dir.exists():
        out_dir.rename(old)
    publish.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.book",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo", help="the run to publish: runs/<profile>/")
    profile = load_profile(parser.parse_args(argv).profile)
    names = [p.stem for p in chapters()]
    out = build_book(profile.paths.run_dir, names, profile.name)
    print(f"book of '{profile.name}': {len(names)} chapters, {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
