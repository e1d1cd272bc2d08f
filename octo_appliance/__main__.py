"""`python -m octo_appliance` is the same as the `octo-appliance` command.

One hidden entry comes first: a ``.pyz`` path as the first argument runs that zipapp with
this program's interpreter, which is how the single executable runs the runner
(:mod:`octo_appliance.agent.interpreter`).
"""

from __future__ import annotations

import sys

from octo_appliance.agent.interpreter import is_zipapp_call, run_zipapp


def _main() -> int:
    if is_zipapp_call(sys.argv[1:]):
        run_zipapp(sys.argv[1:])
        return 0
    from octo_appliance.cli import main  # only now: the runner needs none of the CLI

    return main()


raise SystemExit(_main())
