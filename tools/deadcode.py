"""`make lint`'s dead-code check: vulture over the library, the benchmarks, the solutions and the
code cells of every notebook (a name only a chapter uses is in use), with the allow-list
`tools/vulture_allow.py`. Names only tests use count as dead: a test of nothing is no use.

    .venv/bin/python tools/deadcode.py        # exit 1 and one line per finding when unclean
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["depthg_lib", "benchmarks", "solutions", "tools/vulture_allow.py"]


def notebook_code(notebook: Path) -> str:
    """The code cells of a notebook as one module (IPython magics and shell lines dropped)."""
    cells = json.loads(notebook.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines()
             if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines) + "\n"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
            (Path(tmp) / f"nb_{nb.stem}.py").write_text(notebook_code(nb))
        # exercises.core.register keeps each chapter's checker in REGISTRY by its decorator
        cmd = [sys.executable, "-m", "vulture", *PATHS, tmp, "--min-confidence", "60",
               "--ignore-decorators", "@register"]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
