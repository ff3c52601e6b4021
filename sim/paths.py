"""Where the project writes: builds, reports, waveforms and reproducers."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "build_root"]


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def build_root() -> Path:
    """Where builds, reports and waveforms go: ``$CANNA_BUILD_DIR``, else ``build/`` of the
    checkout, else (an installed, non-editable copy has no checkout) ``build/`` in the current
    directory."""
    if "CANNA_BUILD_DIR" in os.environ:
        return Path(os.environ["CANNA_BUILD_DIR"])
    root = repo_root()
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / "build"
