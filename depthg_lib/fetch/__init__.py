"""`python -m depthg_lib.fetch --profile NAME [--dry-run]`: what a paper profile needs, fetched
resumably and checksummed to where it reads it (docs/reproduction.md §1, §6)."""

from .run import fetch, main
from .sources import plan, released_checkpoint_path

__all__ = ["fetch", "main", "plan", "released_checkpoint_path"]
