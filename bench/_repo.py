"""Imported first by every bench script: the repository's root on ``sys.path``, so a script
run as ``python bench/NAME.py`` imports ``octo_appliance`` and ``tests`` from this checkout
(``bench/`` itself is already there: it holds the script)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
