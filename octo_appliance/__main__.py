"""`python -m octo_appliance` is the same as the `octo-appliance` command.

One hidden entry comes first: a ``.pyz`` path as the first argument runs that zipapp with
this program's interpreter, which is how the single executable runs the runner
(:mod:`octo_appliance.agent.interpreter`).
"""

from __future__ import annotations

from collections.abc import Callable

from octo_appliance.agent.interpreter import main_unless_zipapp


def _command_line() -> Callable[[], int]:
    from octo_appliance.cli import main  # only now: the runner needs none of the CLI

    return main


raise SystemExit(main_unless_zipapp(_command_line))
