"""`python -m depthg_lib.fetch --profile NAME [--dry-run]`: download what a paper profile needs
(backbone, depth model, dataset archive, released checkpoint) to where it reads it, resumably
and checksummed; docs/reproduction.md §1 says what comes from where, §6 the checkpoints.

By concern: `sources` (what each profile needs and where from, `plan`), `downloads` (HTTP with
Range resume, the ledger, zip extraction, the Hugging Face cache), `run` (`fetch`, `main`).
"""

from .run import fetch, main
from .sources import plan, released_checkpoint_path

__all__ = ["fetch", "main", "plan", "released_checkpoint_path"]
