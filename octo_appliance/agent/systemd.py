"""``octo-agent service install``: a systemd unit that runs ``octo-agent run --supervise
--home H``: systemd restarts the supervisor if it dies; the supervisor runs the agent build
and rolls a failed self-update back (:mod:`octo_appliance.agent.supervisor`).

``KillMode=mixed``: on stop systemd sends SIGTERM to the agent alone, which stops its runners
and their scripts' process groups itself (so a script sees SIGTERM once, from its runner),
and SIGKILL to whatever is left after ``TimeoutStopSec``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from octo_appliance.agent.errors import AgentError
from octo_appliance.agent.home import Home
from octo_appliance.agent.supervisor import agent_command
from octo_appliance.filesystem.durable import write_atomic

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_UNIT_NAME = "octo-agent.service"

UNIT_TEMPLATE = """\
# Written by octo-agent service install; re-run it to change this file.
[Unit]
Description=Octo agent ({home})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
{user_line}Restart=always
RestartSec=5
KillMode=mixed
TimeoutStopSec=30
UMask=0077

[Install]
WantedBy=multi-user.target
"""


def unit_text(home: Home, user: str | None, command: list[str] | None = None) -> str:
    exec_start = shlex.join(
        [*(command or agent_command()), "run", "--supervise", "--home", str(home.root)]
    )
    return UNIT_TEMPLATE.format(
        home=home.root,
        exec_start=exec_start,
        user_line=f"User={user}\n" if user else "",
    )


def install(
    home: Home,
    *,
    unit_dir: Path,
    unit_name: str,
    user: str | None,
    force: bool,
    enable: bool,
) -> list[str]:
    """Write the unit file; the lines to print (what was done and what to run next)."""
    if not unit_name.endswith(".service") or "/" in unit_name:
        raise AgentError(
            f"--unit-name {unit_name!r} must be a file name ending in .service",
            hint="e.g. octo-agent-web.service",
        )
    home.require_registered()
    path = unit_dir / unit_name
    if path.exists() and not force:
        raise AgentError(f"{path} already exists", hint="pass --force to overwrite it")
    try:
        unit_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, unit_text(home, user).encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise AgentError(
            f"cannot write {path}: {exc.strerror}",
            hint="run as root, or pass --unit-dir to write it elsewhere",
        ) from None
    commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit_name]]
    lines = [f"wrote {path}"]
    systemctl = shutil.which("systemctl")
    if enable and systemctl is not None and os.path.isdir("/run/systemd/system"):
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            lines.append(f"ran: {shlex.join(command)} (exit code {done.returncode})")
            if done.returncode != 0:
                lines.append(f"  {done.stderr.strip()}")
                break
        return lines
    if enable:
        lines.append("systemd is not running here; run these where it is:")
    else:
        lines.append("to start it now and at every boot, run:")
    lines += [f"  {shlex.join(command)}" for command in commands]
    return lines
