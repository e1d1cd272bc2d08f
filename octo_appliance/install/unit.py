"""The systemd unit of an installed appliance: written from one spec, checked before use.

Hardened where it does not break the built-in worker, whose scripts deploy anywhere on the
machine: the service runs as its own account with only the capabilities to start the worker's
runner as ``octo-worker`` (and to bind a low port); ``NoNewPrivileges`` (setuid programs gain
nothing), ``ProtectSystem=full`` (``/usr``, ``/boot`` and ``/etc`` read-only, but ``/opt``,
``/srv`` and ``/var`` writable for deployments; ``ProtectSystem=strict`` would make every
deployment path read-only), ``PrivateTmp``, kernel tunables, modules and control groups
protected, no setuid/setgid files created, ``UMask=0077``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "octo-appliance.service"
#: the capabilities the service keeps: hand files to the worker account and start its runner
#: as it (chown, setuid, setgid), bind a port below 1024
CAPABILITIES = "CAP_CHOWN CAP_SETUID CAP_SETGID CAP_NET_BIND_SERVICE"
REQUIRED = {
    "Unit": ("Description",),
    "Service": ("ExecStart", "User", "Group"),
    "Install": ("WantedBy",),
}


@dataclass(frozen=True)
class UnitSpec:
    program: list[str]
    user: str
    data_dir: Path
    key_file: Path
    worker_dir: Path

    def render(self) -> str:
        writable = " ".join(str(p) for p in (self.data_dir, self.worker_dir, self.key_file.parent))
        start = shlex.join([*self.program, "serve", "--data-dir", str(self.data_dir)])
        return "\n".join(
            [
                "# Written by 'octo-appliance install'; rerun it rather than editing this file.",
                "[Unit]",
                "Description=Octo Appliance (deployment orchestrator: portal, API, engine)",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=simple",
                f"User={self.user}",
                f"Group={self.user}",
                f"ExecStart={start}",
                f"Environment=OCTO_MASTER_KEY_FILE={self.key_file}",
                "Restart=on-failure",
                "RestartSec=5",
                "LimitNOFILE=65536",
                f"AmbientCapabilities={CAPABILITIES}",
                f"CapabilityBoundingSet={CAPABILITIES}",
                "NoNewPrivileges=yes",
                "ProtectSystem=full",
                f"ReadWritePaths={writable}",
                "PrivateTmp=yes",
                "ProtectKernelTunables=yes",
                "ProtectKernelModules=yes",
                "ProtectControlGroups=yes",
                "RestrictSUIDSGID=yes",
                "LockPersonality=yes",
                "UMask=0077",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ]
        )


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> keys -> values (a key may repeat), as systemd reads a unit file."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        if current is None or not equals or not key.strip():
            raise ValueError(f"line {number} is not KEY=VALUE inside a [Section]: {raw!r}")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_problems(text: str) -> list[str]:
    """What makes ``text`` unusable as the appliance's unit (empty: nothing)."""
    try:
        sections = parse_unit(text)
    except ValueError as exc:
        return [str(exc)]
    problems = [
        f"[{section}] has no {key}="
        for section, keys in REQUIRED.items()
        for key in keys
        if key not in sections.get(section, {})
    ]
    start = sections.get("Service", {}).get("ExecStart", [""])[0]
    if start and not start.startswith("/"):
        problems.append(f"ExecStart must name an absolute path: {start}")
    return problems


def systemd_verify(path: Path) -> str | None:
    """``systemd-analyze verify`` of the written unit when the tool is here: its complaint,
    or None (also when the tool is missing: :func:`unit_problems` is then the check)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    done = subprocess.run(
        [tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    relevant = [
        line
        for line in (done.stderr + done.stdout).splitlines()
        if path.name in line or "ExecStart" in line
    ]
    return "\n".join(relevant) or None if done.returncode else None
