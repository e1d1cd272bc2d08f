"""What the one-line install's test and bench share: asking the appliance for the line."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from tests.fleet import Fleet

PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def install_command(fleet: Fleet, *args: str, program: Sequence[str] = ()) -> str:
    """What ``octo-appliance agent install-command --environment Dev --role web ARGS`` prints
    last: the one-liner (``program``: how to start octo-appliance, default the fleet's)."""
    banner = fleet.server.banner
    done = subprocess.run(
        [
            *(program or fleet.appliance_command),
            "agent",
            "install-command",
            *("--server", banner.url, "--server-thumbprint", banner.thumbprint),
            *("--api-key-file", str(fleet.key_file), "--environment", "Dev", "--role", "web"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": PATH, "HOME": "/root"},
    )
    assert done.returncode == 0, done.stderr
    command = done.stdout.strip().splitlines()[-1]
    assert command.startswith("curl -fsSk --pinnedpubkey 'sha256//"), command
    return command
