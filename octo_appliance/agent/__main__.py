"""``python -m octo_appliance.agent``: the same as the ``octo-agent`` command.

Like the appliance's entry, a ``.pyz`` path as the first argument runs that zipapp with this
program's interpreter: a frozen agent starts its runner that way
(:mod:`octo_appliance.agent.interpreter`).
"""

from __future__ import annotations

from collections.abc import Callable

from octo_appliance.agent.interpreter import main_unless_zipapp


def _command_line() -> Callable[[], int]:
    from octo_appliance.agent.cli import main

    return main


raise SystemExit(main_unless_zipapp(_command_line))
