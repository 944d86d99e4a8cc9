"""The course runner: every numbered chapter, in order, headless, for one profile.

    python -m depthg_lib.course --profile demo [--only 01,04] [--force] [--device cpu|cuda]
    python -m depthg_lib.course --profile my_profile.yaml      # a profile file of your own

Each notebook is executed with papermill into `runs/<profile>/`, its `parameters` cell
overridden with (profile, device, seed, force); `profile` is the shipped profile's name or
the resolved path of a profile file, so the chapters read exactly the file given here.
A notebook whose executed copy is complete and whose inputs are unchanged is skipped unless
`--force`. Its inputs: its source, the profile's values, the shipped weights' checksums,
the source of `depthg_lib`, device and seed — and the runs of the chapters before it, so
re-running one chapter (`--only 01 --force`) makes every later chapter stale, to be re-run
next time. `runs/<profile>/summary.json` records per notebook the seconds it took, its status
(`ok`, `failed`, `stale`) and the key numbers it reported (`depthg_lib.results.record`). A
failing notebook stops the run with its name, the cell and the error's last line; earlier
outputs are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

from .config import REPO_ROOT, Profile, available_profiles, load_profile, profile_arg
from .errors import DepthGError, run_cli
from .io import atomic_path, json_digest, load_json, save_json
from .results import read_results

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
MANIFEST = Path(__file__).resolve().parent / "weights" / "manifest.json"


def chapters(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered chapters (`NN_*.ipynb`) in order; appendices (`A1_*`) are not run."""
    return sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))


def _select(all_chapters: list[Path], only: str | None) -> list[Path]:
    if not only:
        return all_chapters
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [p for p in all_chapters if any(p.stem.startswith(w) for w in wanted)]
    missing = [w for w in wanted if not any(p.stem.startswith(w) for p in all_chapters)]
    if missing:
        names = ", ".join(p.stem for p in all_chapters)
        raise DepthGError(f"--only {only}: no chapter starts with {', '.join(missing)}; "
                          f"chapters are: {names}")
    return chosen


LIB_DIR = Path(__file__).resolve().parent


def library_digest(lib_dir: Path | None = None) -> str:
    """sha256 over the library's Python source (this runner excluded: nothing imports it),
    so that editing, say, `losses.py` makes every chapter that uses the library stale."""
    lib_dir = LIB_DIR if lib_dir is None else lib_dir
    digest = hashlib.sha256()
    for path in sorted(lib_dir.rglob("*.py")):
        if path.name == "course.py" and path.parent == lib_dir or "__pycache__" in path.parts:
            continue
        digest.update(f"{path.relative_to(lib_dir).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _inputs(notebook: Path, profile: Profile, device: str, seed: int, library: str,
            earlier: dict[str, str | None]) -> dict:
    """What a chapter's result depends on, part by part (so a re-run can say why): its
    source, the profile's values (wherever `extends:` took them from), the shipped weights
    (their checksums in the manifest), the library's source, device and seed, and the run
    of every earlier chapter (`earlier`: chapter → its run id, None if never run here)."""
    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    values = {k: v for k, v in dataclasses.asdict(profile).items() if k != "source"}
    shas = {}
    if MANIFEST.exists():  # the checksums only: recording a new quality figure changes nothing
        shas = {name: entry.get("sha256") for name, entry in load_json(MANIFEST).items()
                if isinstance(entry, dict)}
    return {"notebook": h(_source_only(notebook)),
            "profile": json_digest(values), "weights": json_digest(shas), "library": library,
            "device, seed": h(f"{device}|{seed}"), "earlier chapters": dict(earlier)}


def _fingerprint(inputs: dict) -> str:
    return json_digest(inputs)


def _why(old: dict | None, new: dict) -> str:
    """Which inputs changed since the recorded run, in words."""
    if not old:
        return ""
    parts = [k for k in new if k != "earlier chapters" and old.get(k) != new[k]]
    before = old.get("earlier chapters") or {}
    redone = [c for c, run in new["earlier chapters"].items() if before.get(c) != run]
    if redone:
        parts.append("chapter " + ", ".join(c.split("_")[0] for c in redone) + " ran again")
    return ", ".join(parts)


def _source_only(notebook: Path) -> str:
    """The notebook's cell sources, so that stray outputs or metadata do not force a re-run."""
    cells = json.loads(notebook.read_text())["cells"]
    return json.dumps([[c["cell_type"], "".join(c["source"])] for c in cells])


def _failure_message(err: Exception, executed: Path) -> tuple[str, str]:
    """(cell, last line) of a papermill execution error; cells counted from 1 in the source
    notebook (papermill's injected-parameters cell is not counted)."""
    index = getattr(err, "cell_index", None)
    if index is None:
        cell = f"execution count {getattr(err, 'exec_count', '?')}"
    else:
        try:
            tags = [c.get("metadata", {}).get("tags", [])
                    for c in json.loads(executed.read_text())["cells"]]
            tags = [t for t in tags if "papermill-error-cell-tag" not in t]  # added after the run
            injected = [i for i, t in enumerate(tags) if "injected-parameters" in t]
            index -= sum(1 for i in injected if i < index)
        except (OSError, ValueError, KeyError):
            pass
        cell = f"cell {index + 1}"
    evalue = getattr(err, "evalue", None)
    ename = getattr(err, "ename", type(err).__name__)
    last = f"{ename}: {evalue}" if evalue is not None else str(err).strip().splitlines()[-1]
    return cell, last.strip().splitlines()[-1] if last.strip() else ename


def _kernel_config():
    """Encrypt the kernel's local sockets (CurveZMQ, keys made per run) where pyzmq can:
    ipykernel warns at every chapter otherwise."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def _declared(notebook: Path, values: dict) -> dict:
    """Only the parameters the chapter's parameters cell declares (e.g. 07 has no `force`):
    papermill warns about any other."""
    import papermill

    names = papermill.inspect_notebook(str(notebook))
    return {k: v for k, v in values.items() if k in names}


def run_course(profile_name: str, only: str | None = None, force: bool = False,
               device: str = "auto", seed: int | None = None, kernel: str = "python3",
               notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    """Run the chapters for a profile; returns the summary (also written to summary.json)."""
    import papermill

    profile = load_profile(profile_name)
    seed = profile.seed if seed is None else seed
    run_dir = profile.paths.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_path = run_dir / "summary.json"
    summary = load_json(summary_path) if summary_path.exists() else {}
    summary.setdefault("notebooks", {})
    from .env import machine_name  # imports torch: only when a run starts

    summary.update(profile=profile.name, device=device, seed=seed, machine=machine_name())

    todo = _select(chapters(notebook_dir), only)
    if not todo:
        raise DepthGError(f"no chapters found in {notebook_dir}")
    # The chapters read the very file given here (a profile outside the library is passed
    # as its path: an edited copy named like a shipped profile never runs the shipped one).
    arg = profile_arg(profile)
    if arg != profile.name:
        arg = str(Path(arg).resolve())
    os.environ["DEPTHG_PROFILE"] = arg  # for anything a chapter starts itself
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    library = library_digest()
    every = chapters(notebook_dir)
    total_start = time.perf_counter()
    for number, notebook in enumerate(todo, 1):
        out = run_dir / notebook.name
        inputs = _chapter_inputs(notebook, every, summary, profile, device, seed, library)
        fingerprint = _fingerprint(inputs)
        entry = summary["notebooks"].get(notebook.stem, {})
        label = f"[{number}/{len(todo)}] {notebook.stem}"
        if (not force and out.exists() and entry.get("status") == "ok"
                and entry.get("fingerprint") == fingerprint):
            print(f"{label}: done earlier ({entry.get('seconds', 0):.0f} s), skipped", flush=True)
            continue
        why = "forced" if force else _why(entry.get("inputs"), inputs)
        print(f"{label}: running{f' ({why} changed)' if why and not force else ''} ...",
              flush=True)
        start = time.perf_counter()
        entry = {"status": "running", "fingerprint": fingerprint, "inputs": inputs}
        failed = run_dir / f"{notebook.stem}.failed.ipynb"
        try:
            with atomic_path(out) as partial:
                try:
                    papermill.execute_notebook(
                        str(notebook), str(partial), kernel_name=kernel, language="python",
                        parameters=_declared(notebook, {"profile": arg, "device": device,
                                                        "seed": seed, "force": force}),
                        cwd=str(notebook.parent), progress_bar=False, log_output=False,
                        config=_kernel_config())
                except Exception:
                    if partial.exists():
                        partial.replace(failed)
                    raise
        except Exception as err:  # papermill wraps every kernel error
            cell, last = _failure_message(err, failed)
            entry.update(status="failed", seconds=round(time.perf_counter() - start, 1),
                         error=f"{cell}: {last}")
            summary["notebooks"][notebook.stem] = entry
            save_json(summary_path, summary)
            raise DepthGError(f"{notebook.name} failed at {cell}: {last} — executed copy up to "
                              f"the error: {failed}; earlier chapters' outputs are kept in "
                              f"{run_dir}") from None
        failed.unlink(missing_ok=True)
        seconds = time.perf_counter() - start
        entry.update(status="ok", seconds=round(seconds, 1), run=time.time_ns(),
                     results=read_results(profile.name, notebook.stem))
        summary["notebooks"][notebook.stem] = entry
        summary["total_seconds"] = round(sum(e.get("seconds", 0)
                                             for e in summary["notebooks"].values()), 1)
        save_json(summary_path, summary)
        shown = ", ".join(f"{k}={v}" for k, v in entry["results"].items())
        print(f"{label}: ok in {seconds:.1f} s{'  ' + shown if shown else ''}", flush=True)
    stale = _mark_stale(every, todo, summary, profile, device, seed, library)
    save_json(summary_path, summary)
    if stale:
        print(f"now stale (an earlier chapter ran again): {', '.join(stale)}; bring them up to "
              f"date with `python -m depthg_lib.course --profile {profile_arg(profile)}`")
    print(f"course '{profile.name}': {len(todo)} chapter(s) in "
          f"{time.perf_counter() - total_start:.0f} s this run; summary in {summary_path}")
    return summary


def _chapter_inputs(notebook, every, summary, profile, device, seed, library) -> dict:
    entries = summary["notebooks"]
    earlier = {p.stem: entries.get(p.stem, {}).get("run") for p in every if p < notebook}
    return _inputs(notebook, profile, device, seed, library, earlier)


def _mark_stale(every, todo, summary, profile, device, seed, library) -> list[str]:
    """Chapters not run now whose recorded run no longer matches their inputs (an earlier
    chapter ran again, the library changed): marked `stale` in the summary."""
    stale = []
    for notebook in every:
        entry = summary["notebooks"].get(notebook.stem)
        if notebook in todo or not entry or entry.get("status") != "ok":
            continue
        inputs = _chapter_inputs(notebook, every, summary, profile, device, seed, library)
        if entry.get("fingerprint") != _fingerprint(inputs):
            entry["status"] = "stale"
            stale.append(notebook.stem)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.course",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="demo",
                        help=f"one of: {', '.join(available_profiles())} (or a YAML path)")
    parser.add_argument("--only", help="comma-separated chapter numbers, e.g. 01,04")
    parser.add_argument("--force", action="store_true", help="re-run finished chapters too")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    run_course(args.profile, only=args.only, force=args.force, device=args.device,
               seed=args.seed)
    return 0


if __name__ == "__main__":
    run_cli(main)
