"""`python -m depthg_lib.data.synthscenes --out DIR --n-train N --n-val M --size S`."""

from ...errors import run_cli
from .generate import main

if __name__ == "__main__":
    run_cli(main)
