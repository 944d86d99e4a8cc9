"""`python -m depthg_lib.fetch --profile NAME [--dry-run]`: what a paper profile needs, fetched
resumably and checksummed to where it reads it (docs/reproduction.md §1, §6); the dry run prints
each item's state and the disk it needs. The catalog is `sources`, the network `downloads`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Profile, load_profile
from ..data.readers import get_reader
from ..errors import DepthGError
from ..io import free_bytes
from ..rehearse.project import dry_run_lines, human_bytes
from . import downloads, sources
from .sources import Item, plan, released_checkpoint_path

__all__ = ["fetch", "main", "plan", "released_checkpoint_path"]


def status(item: Item) -> str:
    """present / partial / missing / manual, without touching the network."""
    if item.hub_repo:
        if item.kind == "backbone" and item.dest.exists():
            return "present"
        if downloads.hub_snapshot(item.hub_repo, download=False) is None:
            return "missing"
        return "present" if item.kind != "backbone" else "in the hub cache, not linked"
    if item.dest.exists() and (item.dest.is_file() or any(item.dest.iterdir())):
        return "present"
    if item.manual:
        return "manual"
    target = item.archive or item.dest
    if target.exists():
        return "downloaded, not extracted"
    part = target.with_name(target.name + ".part")
    if part.exists():
        return f"partial ({human_bytes(part.stat().st_size)} so far)"
    return "missing"


def fetch_item(item: Item, ledger: downloads.Ledger, progress: bool = True,
               keep_archive: bool = False, verify: bool = False) -> str:
    """Make one item present; returns what was done."""
    if item.hub_repo:
        return downloads.fetch_hub(item, ledger)
    if status(item) == "present":
        if item.url and item.archive is None:
            return downloads.verify_file(item.url, item.dest, ledger, deep=verify)
        return "present"
    if item.manual:
        return "NOT FETCHED: " + item.manual
    if item.archive is None:
        downloads.download(item.url, item.dest, ledger, progress=progress)
        return f"downloaded to {item.dest}"
    if not item.archive.exists():
        downloads.download(item.url, item.archive, ledger, progress=progress)
    elif ledger.get(item.url):
        downloads.verify_file(item.url, item.archive, ledger, deep=verify)
    downloads.extract_zip(item.archive, item.dest)
    ledger.record(item.url, extracted_to=str(item.dest))
    if not keep_archive:
        item.archive.unlink()
    report = get_reader(item.dataset, item.dest).check()
    print(report)
    if not report.usable:
        raise DepthGError(f"{item.dest} was extracted from {item.key} but the data check above "
                          "finds it unusable; delete the folder and run again, or fix what the "
                          "check lists")
    return f"extracted to {item.dest}, data check: usable"


def describe_plan(items: list[Item], root: Path) -> str:
    """The dry-run table: each item, its state, its size and where it goes; then the disk."""
    lines = [f"{'kind':<11}{'item':<44}{'state':<28}{'size':<22}destination"]
    need, todo = 0.0, 0
    for item in items:
        state = status(item)
        size, label = item.size, "estimated"
        if item.url and state not in ("present", "manual"):
            measured = downloads.remote_size(item.url)
            if measured is not None:
                size, label = measured, "from the server"
        shown = f"{human_bytes(size)} ({label})" if size else "?"
        dest = item.dest if not item.hub_repo or item.kind == "backbone" else "hub cache"
        lines.append(f"{item.kind:<11}{item.key:<44}{state:<28}{shown:<22}{dest}")
        if item.note:
            lines.append(f"{'':<11}note: {item.note}")
        if item.manual and state == "manual":
            lines.append(f"{'':<11}by hand: {item.manual}")
        if state not in ("present", "manual"):
            need += size + (item.extracted if item.archive is not None else 0)
            todo += 1
    free = free_bytes(root)
    lines += ["", f"would fetch: {todo} item(s); disk needed about {human_bytes(need)} (archives "
              f"are deleted after extraction unless --keep-archives); free at {root}: "
              f"{human_bytes(free)}"]
    if need > free:
        lines.append("NOT ENOUGH DISK: set data_root in a copy of the profile to a larger disk")
    return "\n".join(lines)


def fetch(profile: Profile | str, only: list[str] | None = None, dry_run: bool = False,
          progress: bool = True, keep_archives: bool = False,
          verify: bool = False) -> list[tuple[Item, str]]:
    """Fetch what `profile` needs (a dry run: print the plan); returns (item, outcome) pairs."""
    profile = load_profile(profile)
    todo = plan(profile, only=only)
    droot = profile.paths.data_root
    if dry_run:
        print(f"profile {profile.name}: data_root {droot}", describe_plan(todo, droot), "",
              *dry_run_lines(profile), sep="\n")
        return [(item, "dry run") for item in todo]
    if not todo:
        print(f"profile {profile.name} needs nothing from the network")
    ledger = downloads.Ledger(droot / downloads.LEDGER)
    done = []
    for item in todo:
        outcome = fetch_item(item, ledger, progress, keep_archives, verify)
        print(f"{item.kind:<11}{item.key:<44}{outcome}")
        done.append((item, outcome))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.fetch",
        description="Download what a paper profile needs (backbone, depth model, dataset, "
                    "released checkpoint) to where it reads it; docs/reproduction.md §1, §6.",
        epilog=f"Mirrors: ${sources.ENV_DINO} (default {sources.DINO_URL}), "
               f"${sources.ENV_STEGO} (default {sources.STEGO_URL}).")
    add = parser.add_argument
    add("--profile", required=True, help="profile name or YAML file")
    add("--dry-run", action="store_true",
        help="print what would be fetched and the disk it needs; change nothing")
    add("--only", action="append", choices=sources.KINDS, help="fetch only this kind (repeatable)")
    add("--keep-archives", action="store_true", help="keep the downloaded zips after extraction")
    add("--verify", action="store_true", help="re-hash present files against the ledger's sha256")
    fetch(**vars(parser.parse_args(argv)))  # prints each item's outcome
    return 0
