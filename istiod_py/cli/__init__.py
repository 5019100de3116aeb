"""`istiod-py` command line (console script `istiod-py = istiod_py.cli:main`).
The parser and the list of subcommand groups are in app.py."""

from __future__ import annotations

from istiod_py.cli.app import main

__all__ = ["main"]
