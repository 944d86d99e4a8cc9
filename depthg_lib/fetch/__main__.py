"""`python -m depthg_lib.fetch`: see the package docstring and `--help`."""

from ..errors import run_cli
from .run import main

run_cli(main)
