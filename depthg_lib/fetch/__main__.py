"""`python -m depthg_lib.fetch`: see the package docstring and `--help`."""

from ..errors import run_cli
from .cli import main

run_cli(main)
