"""``python -m octo_appliance.agent``: the same as the ``octo-agent`` command."""

from __future__ import annotations

import sys

from octo_appliance.agent.cli import main

sys.exit(main())
