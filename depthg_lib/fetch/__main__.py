from ..errors import run_cli
from .run import main

run_cli(main)
