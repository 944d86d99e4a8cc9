"""`python -m depthg_lib.fetch --profile NAME [--dry-run]`: download what a paper profile needs
to where it reads it, resumably and checksummed (docs/reproduction.md §1, §6): `sources` (what
and from where), `downloads` (HTTP, ledger, zip, hub cache), `run` (`fetch`, `main`)."""

from .run import fetch, main
from .sources import plan, released_checkpoint_path

__all__ = ["fetch", "main", "plan", "released_checkpoint_path"]
