from ..errors import run_cli
from .runner import main

if __name__ == "__main__":
    run_cli(main)
