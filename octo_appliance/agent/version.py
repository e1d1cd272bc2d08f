"""The version this agent reports: the one stamped into its frozen build, else the package's.

A frozen octo-agent carries the data file ``octo-agent-version`` (written by agent.spec from
``OCTO_AGENT_BUILD_VERSION``), so two builds of the same source can carry different versions
(self-update is tested that way); a development install reports ``octo_appliance.__version__``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from octo_appliance import __version__

#: the data file agent.spec writes into the bundle
VERSION_FILE_NAME = "octo-agent-version"


def _stamped() -> str | None:
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return None
    try:
        text = (Path(base) / VERSION_FILE_NAME).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


#: what ``--version``, registration and ``agent.info`` report
AGENT_VERSION = _stamped() or __version__
