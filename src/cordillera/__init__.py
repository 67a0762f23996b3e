"""cordillera: a laptop-runnable reasoning VLA stack for autonomous driving."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``"0.1.0+g<commit>"`` (``".dirty"`` appended for uncommitted tracked changes) in a git checkout,
    ``"0.1.0"`` otherwise. Stamped on generated clips and trained checkpoints, so a result names the
    simulator and trainer that made it (a rerun of `data generate` keeps clips an older simulator rendered)."""
    src = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # this file is the checkout's, not an install inside one
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}" + (".dirty" if dirty else "")
