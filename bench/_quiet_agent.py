"""``octo-agent`` as the benches start it with ``--assume-quiet``: fork servers start when the
agent process is idle, whatever the rest of the machine does.

The agent starts its runner fork servers only when the machine's CPUs were at least half idle
(``octo_appliance.agent.quiet``); on a machine shared with other benchmarks that is never
the case, every runner then starts from scratch (~80 ms of CPU instead of ~10), and the
bench measures the other benchmarks' load instead of the deployment. This launcher, outside
the product, lowers that share to 0, as if the machine were quiet.
"""

from __future__ import annotations

import sys

import _repo  # noqa: F401  (the repository on sys.path, first)

from octo_appliance.agent import quiet
from octo_appliance.agent.cli import main

if __name__ == "__main__":
    quiet.IDLE_SHARE = 0.0
    sys.exit(main())
