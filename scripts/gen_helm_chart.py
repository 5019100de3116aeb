#!/usr/bin/env python3
"""Rewrite the generated files of deploy/charts/istiod-py (istiod_py/install/chart.py)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from istiod_py.install.chart import files  # noqa: E402

chart = ROOT / "deploy" / "charts" / "istiod-py"
for rel, text in files().items():
    path = chart / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(path.relative_to(ROOT))
