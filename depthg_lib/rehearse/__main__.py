from ..errors import run_cli
from .runner import main

run_cli(main)
