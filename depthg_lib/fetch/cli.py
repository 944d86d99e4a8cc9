"""The command line of `python -m depthg_lib.fetch`."""

from __future__ import annotations

import argparse

from .run import fetch
from .sources import DINO_URL, ENV_DINO, ENV_STEGO, KINDS, STEGO_URL, released_checkpoint_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m depthg_lib.fetch",
        description="Download what a paper profile needs (backbone, depth model, dataset, "
                    "released checkpoint) to where it reads it; docs/reproduction.md §1, §6.")
    parser.add_argument("--profile", required=True, help="profile name or YAML file")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be fetched and the disk it needs; change nothing")
    parser.add_argument("--root", default=None,
                        help="data folder instead of the profile's data_root (the stages "
                        "read it only if the profile's data_root says so too)")
    parser.add_argument("--only", action="append", choices=KINDS,
                        help="fetch only this kind (repeatable)")
    parser.add_argument("--item", action="append", default=[],
                        help="also fetch a catalog archive by name (potsdamraw)")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded zips after extraction")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash present files against the ledger's sha256")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the data check after extracting a dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--dino-url", default=None, help=f"base URL of the DINO release "
                        f"(default ${ENV_DINO} or {DINO_URL})")
    parser.add_argument("--stego-url", default=None, help=f"base URL of STEGO's storage "
                        f"(default ${ENV_STEGO} or {STEGO_URL})")
    parser.add_argument("--released-path", action="store_true",
                        help="print the path of the profile's released checkpoint if present")
    args = parser.parse_args(argv)
    if args.released_path:
        path = released_checkpoint_path(args.profile)
        if path is not None and path.is_file():
            print(path)
        return 0
    results = fetch(args.profile, root=args.root, only=tuple(args.only) if args.only else None,
                    items=args.item, dry_run=args.dry_run, progress=not args.quiet,
                    keep_archives=args.keep_archives, check=not args.no_check,
                    verify=args.verify, dino_url=args.dino_url, stego_url=args.stego_url)
    manual = [item for item, outcome in results if outcome.startswith("NOT FETCHED")]
    if manual and not args.dry_run:
        print(f"{len(manual)} item(s) must be placed by hand (see above); the rest is in place")
    return 0

