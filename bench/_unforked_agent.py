"""``octo-agent`` whose identities start every runner directly, without a fork server.

For benches that pack hundreds of identities into one process on one host and measure the
appliance, not the agents: each identity's fork server (~15 MB resident, docs/agent.md
"Forked") would put 1,000 identities at ~15 GB. Usage: as ``octo_appliance.agent.cli``.
"""

from __future__ import annotations

import sys

from octo_appliance.agent.cli import main
from octo_appliance.agent.runner_host import RunnerHost

if __name__ == "__main__":
    RunnerHost.forks = False
    sys.exit(main())
