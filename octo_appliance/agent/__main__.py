"""``python -m octo_appliance.agent``: the same as the ``octo-agent`` command.

Like the appliance's entry, a ``.pyz`` path as the first argument runs that zipapp with this
program's interpreter: a frozen agent starts its runner that way
(:mod:`octo_appliance.agent.interpreter`).
"""

from __future__ import annotations

import sys

from octo_appliance.agent.interpreter import is_zipapp_call, run_zipapp


def _main() -> int:
    if is_zipapp_call(sys.argv[1:]):
        run_zipapp(sys.argv[1:])
        return 0
    from octo_appliance.agent.cli import main

    return main()


sys.exit(_main())
