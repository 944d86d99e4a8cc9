"""The course runner: every numbered chapter, in order, headless, for one profile, under papermill
into `runs/<profile>/` (`python -m depthg_lib.course --profile demo [--only 01,04] [--force]`).
A chapter is skipped while its executed copy is complete and its inputs (code, profile, weights,
library, device, seed, earlier chapters' runs) unchanged; `summary.json` records seconds, status
and key numbers. A failure stops the run naming the cell; Ctrl-C or SIGTERM: `interrupted`."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import signal
import sys
import time
import tokenize
from pathlib import Path

from .config import NOTEBOOK_DIR, Profile, available_profiles, chapters, load_profile, profile_arg
from .errors import DepthGError, run_cli
from .io import atomic_path, ensure_dir, json_digest, load_json, save_json, stage_lock
from .results import read_results

LIB_DIR = Path(__file__).resolve().parent
MANIFEST = LIB_DIR / "weights" / "manifest.json"


def _select(all_chapters: list[Path], only: str | None) -> list[Path]:
    if not only:
        return all_chapters
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    missing = [w for w in wanted if not any(p.stem.startswith(w) for p in all_chapters)]
    if missing:
        raise DepthGError(f"--only {only}: no chapter starts with {', '.join(missing)}; "
                          f"chapters are: {', '.join(p.stem for p in all_chapters)}")
    return [p for p in all_chapters if any(p.stem.startswith(w) for w in wanted)]


def library_digest(lib_dir: Path = LIB_DIR) -> str:
    """sha256 of the library's source but this runner: an edit of it stales every chapter."""
    digest = hashlib.sha256()
    for path in sorted(lib_dir.rglob("*.py")):
        if path.name == "course.py" and path.parent == lib_dir or "__pycache__" in path.parts:
            continue
        digest.update(f"{path.relative_to(lib_dir).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text())["cells"]


def _without_comments(source: str) -> str:
    """Source without `#` comments and blank lines (as it is if it does not tokenize: `!pip`)."""
    lines = source.splitlines()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                row, col = token.start
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source
    return "\n".join(line.rstrip() for line in lines if line.strip())


class _Run:
    """One course run: what every chapter of it is given, and the summary it keeps."""

    def __init__(self, profile_name: str, force: bool, device: str, seed: int | None,
                 every: list[Path]):
        self.profile = load_profile(profile_name)  # a bad profile fails before torch loads
        self.run_dir = ensure_dir(self.profile.paths.run_dir, "run folder")
        self.force, self.device, self.every = force, device, every
        self.seed = self.profile.seed if seed is None else seed
        self.summary_path = self.run_dir / "summary.json"
        self.summary = load_json(self.summary_path) if self.summary_path.exists() else {}
        self.entries = self.summary.setdefault("notebooks", {})
        from .env import machine_name  # imports torch: only when a run starts

        self.summary.update(profile=self.profile.name, device=device, seed=self.seed,
                            machine=machine_name())
        # a profile outside the library is passed as its path: the chapters read that very file
        arg = profile_arg(self.profile)
        self.arg = arg if arg == self.profile.name else str(Path(arg).resolve())
        os.environ["DEPTHG_PROFILE"] = self.arg  # for anything a chapter starts itself
        os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
        self.library = library_digest()

    def save(self) -> None:
        seconds = sum(e.get("seconds", 0) for e in self.entries.values())
        self.summary["total_seconds"] = round(seconds, 1)
        save_json(self.summary_path, self.summary)

    def inputs(self, notebook: Path) -> dict:
        """What a chapter's result depends on, part by part (so a re-run can say why)."""
        def h(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()[:16]

        values = {k: v for k, v in dataclasses.asdict(self.profile).items() if k != "source"}
        shas = {}
        if MANIFEST.exists():  # the checksums only: a new quality figure changes nothing
            shas = {name: entry.get("sha256") for name, entry in load_json(MANIFEST).items()
                    if isinstance(entry, dict)}
        # the notebook by its cells only: stray outputs or metadata do not count
        cells = json.dumps([[c["cell_type"], "".join(c["source"])] for c in _cells(notebook)])
        earlier = {p.stem: self.entries.get(p.stem, {}).get("run")
                   for p in self.every if p < notebook}
        return {"notebook": h(cells), "profile": json_digest(values),
                "weights": json_digest(shas), "library": self.library,
                "device, seed": h(f"{self.device}|{self.seed}"), "earlier chapters": earlier}


def run_course(profile: str, only: str | None = None, force: bool = False,
               device: str = "auto", seed: int | None = None,
               notebook_dir: Path = NOTEBOOK_DIR) -> dict:
    """Run the chapters for a profile; returns the summary (also written to summary.json)."""
    run = _Run(profile, force, device, seed, chapters(notebook_dir))
    todo = _select(run.every, only)
    if not todo:
        raise DepthGError(f"no chapters found in {notebook_dir}")
    total_start = time.perf_counter()
    with stage_lock(run.run_dir, "course"):
        for leftover in run.run_dir.glob(".[0-9][0-9]_*.ipynb.*.tmp.ipynb"):
            leftover.unlink()  # the copy a killed run (kill -9) could not remove
        for number, notebook in enumerate(todo, 1):
            _run_chapter(run, notebook, f"[{number}/{len(todo)}] {notebook.stem}")
        stale = _mark_stale(run, todo)
        run.save()
    if stale:
        print(f"now stale: {', '.join(stale)}; bring them up to "
              f"date with `{_command(run.profile)}`")
    print(f"course '{run.profile.name}': {len(todo)} chapter(s) in "
          f"{time.perf_counter() - total_start:.0f} s this run; summary in {run.summary_path}")
    return run.summary


def _command(profile: Profile) -> str:
    return f"python -m depthg_lib.course --profile {profile_arg(profile)}"


def _run_chapter(run: _Run, notebook: Path, label: str) -> None:
    """Run one chapter unless its executed copy is complete and its inputs unchanged."""
    out = run.run_dir / notebook.name
    inputs = run.inputs(notebook)
    fingerprint = json_digest(inputs)
    old = run.entries.get(notebook.stem, {})
    if (not run.force and out.exists() and old.get("status") == "ok"
            and old.get("fingerprint") == fingerprint):
        print(f"{label}: done earlier ({old.get('seconds', 0):.0f} s), skipped", flush=True)
        return
    why = "" if run.force else _why(old.get("inputs"), inputs)
    print(f"{label}: running{f' ({why} changed)' if why else ''} ...", flush=True)
    # the code sans comments: after an edit of only the prose of an ok run, later chapters stay
    code = json_digest([_without_comments("".join(c["source"])) for c in _cells(notebook)
                        if c["cell_type"] == "code"])
    before = old.get("inputs") or {}
    same = (not run.force and old.get("status") == "ok" and old.get("code") == code
            and all(before.get(k) == v for k, v in inputs.items() if k != "notebook"))
    entry = {"status": "running", "fingerprint": fingerprint, "inputs": inputs, "code": code,
             "run": old.get("run") if same else None}
    run.entries[notebook.stem] = entry
    run.save()
    start = time.perf_counter()
    try:
        _execute(run, notebook, out)
    except BaseException as err:
        _record_stop(run, notebook, entry, err, time.perf_counter() - start)
        raise
    seconds = time.perf_counter() - start
    entry.update(status="ok", seconds=round(seconds, 1), run=entry["run"] or time.time_ns(),
                 results=read_results(run.profile.name, notebook.stem))
    run.save()
    shown = ", ".join(f"{k}={v}" for k, v in entry["results"].items())
    print(f"{label}: ok in {seconds:.1f} s{'  ' + shown if shown else ''}", flush=True)


def _execute(run: _Run, notebook: Path, out: Path) -> None:
    """papermill into a copy renamed onto `out` once complete (if failed: `*.failed.ipynb`)."""
    import papermill  # papermill, zmq and traitlets load only when a chapter runs
    import zmq
    from traitlets.config import Config

    # encrypted kernel sockets where pyzmq can (ipykernel warns at every chapter otherwise);
    # only the parameters the chapter declares (07 has no `force`; papermill warns otherwise)
    config = Config({"KernelManager": {"transport_encryption": "auto"}} if zmq.has("curve")
                    else {})
    declared = papermill.inspect_notebook(str(notebook))
    values = {"profile": run.arg, "device": run.device, "seed": run.seed, "force": run.force}
    failed = out.with_name(f"{notebook.stem}.failed.ipynb")
    with atomic_path(out) as partial:
        try:
            papermill.execute_notebook(
                str(notebook), str(partial), kernel_name="python3", language="python",
                parameters={k: v for k, v in values.items() if k in declared},
                cwd=str(notebook.parent), progress_bar=False, log_output=False, config=config)
        except Exception:  # papermill wraps every kernel error
            if partial.exists():
                partial.replace(failed)
            raise
    failed.unlink(missing_ok=True)


def _record_stop(run: _Run, notebook: Path, entry: dict, err: BaseException,
                 seconds: float) -> None:
    """Record a chapter that did not finish: `interrupted`, or `failed` (raised as one
    `DepthGError` naming the cell as the chapter counts it and the error's last line)."""
    entry.update(status="interrupted", seconds=round(seconds, 1))
    if not isinstance(err, Exception):  # KeyboardInterrupt: Ctrl-C or SIGTERM
        run.save()
        return
    index = getattr(err, "cell_index", None)  # only papermill's execution error has it
    cell = "a cell"
    if index is not None:  # papermill's injected-parameters cell (after `parameters`) is not one
        tags = [c.get("metadata", {}).get("tags", []) for c in _cells(notebook)]
        injected = next((i + 1 for i, t in enumerate(tags) if "parameters" in t), 0)
        cell = f"cell {index if index > injected else index + 1}"
    evalue, ename = getattr(err, "evalue", None), getattr(err, "ename", type(err).__name__)
    lines = (f"{ename}: {evalue}" if evalue is not None else str(err)).strip().splitlines()
    entry.update(status="failed", error=f"{cell}: {lines[-1].strip() if lines else ename}")
    run.save()
    raise DepthGError(f"{notebook.name} failed at {entry['error']} — executed copy up to the "
                      f"error: {run.run_dir / f'{notebook.stem}.failed.ipynb'}; earlier "
                      f"chapters' outputs are kept in {run.run_dir}") from None


def _mark_stale(run: _Run, todo: list[Path]) -> list[str]:
    """Mark `stale` (and return, with what changed) the chapters not run whose inputs changed."""
    stale = []
    for notebook in run.every:
        entry = run.entries.get(notebook.stem)
        if notebook in todo or not entry or entry.get("status") != "ok":
            continue
        inputs = run.inputs(notebook)
        if entry.get("fingerprint") != json_digest(inputs):
            entry["status"] = "stale"
            why = [w if w.endswith("again") else f"{w} changed"
                   for w in _why(entry.get("inputs"), inputs).split(", ") if w]
            stale.append(f"{notebook.stem} ({'; '.join(why) or 'its inputs changed'})")
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
    # SIGTERM as Ctrl-C: a killed run cleans up (copies, kernel) and records where it stopped
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_course(**vars(args))
    except KeyboardInterrupt:
        profile = load_profile(args.profile)
        print(f"interrupted: the chapter under way is recorded as interrupted in "
              f"{profile.paths.run_dir / 'summary.json'} and the outputs of finished runs are "
              f"kept; `{_command(profile)}` does what is left", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    run_cli(main)
