"""`python -m depthg_lib.data check --dataset NAME --root DIR`: the expected layout, then per
split what is present and missing; exits 1 when the stages could not run on the folder."""

from __future__ import annotations

import argparse

from ..config import load_profile, profile_arg
from ..errors import DepthGError, run_cli
from .readers import READERS, get_reader


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depthg_lib.data",
                                     description="Dataset tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a dataset folder against its expected layout")
    check.add_argument("--dataset", choices=sorted(READERS), help="dataset kind")
    check.add_argument("--root", help="the dataset's folder (a profile's data_root/dataset_dir)")
    check.add_argument("--profile", help="take dataset and root from this profile instead")
    check.add_argument("--deep", action="store_true",
                       help="also open every image and label (slow; finds corrupt files)")
    args = parser.parse_args(argv)

    dataset, root, arg = args.dataset, args.root, None
    if args.profile:
        profile = load_profile(args.profile)
        dataset, root = dataset or profile.dataset, root or profile.paths.dataset_dir
        arg = profile_arg(profile)
    if not (dataset and root):
        raise DepthGError("give --dataset NAME and --root DIR (or --profile P)")
    report = get_reader(dataset, root).check(deep=args.deep, profile_arg=arg)
    print(report)
    return 0 if report.usable else 1


if __name__ == "__main__":
    run_cli(main)
