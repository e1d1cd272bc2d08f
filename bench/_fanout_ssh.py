"""``bench/fanout.py --transport ssh``: the same job to N SSH targets, for Octo and the peers.

One OpenSSH server of the bench's own (``tests/sshd.py``: a free 127.0.0.1 port, generated
host key and config in the bench's temp dir; the machine's sshd is not touched), logins as
the current user with one generated key. Every tool reaches its N targets (each its own
directory) through that sshd:

- **octo**: a real appliance with N targets of communication style ``ssh`` (no agent; the
  host key pinned, the key sealed in the vault; each target's ``directory`` is its
  directory), the same ``deploy-package`` release as with agents;
- **ansible**: ``ansible-playbook -f N`` over its ``ssh`` connection (OpenSSH client,
  ControlPersist, pipelining, the host key checked against a known_hosts file);
- **pyinfra**: ``pyinfra -y --parallel N`` over its ``@ssh`` connector (paramiko), the same
  key and known_hosts file.

The floor stays local (the job without any orchestrator or transport), so "time minus the
floor" is what orchestration and transport add. The goal (issue 11): Octo's overhead under
half the faster peer's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
from _fanout_octo import Octo, Unavailable
from _fleet import (
    ENVIRONMENT,
    ROLE,
    create_key,
    start_appliance,
)
from _job import Package
from _peers import VENV, Ansible, Pyinfra
from _tasks import (
    run_script,
)

from tests.sshd import Sshd

GOAL_OVERHEAD_SHARE = 0.5


class SshServer:
    """The bench's sshd, a key file and a known_hosts file every tool uses."""

    def __init__(self, root: Path) -> None:
        self.root = root / "sshd"
        self.sshd = Sshd(self.root).start()
        self.key_file = self.root / "client_key"
        self.key_file.write_text(self.sshd.client_key, encoding="utf-8")
        self.key_file.chmod(0o600)
        host_key = (self.root / "host_ed25519.pub").read_text(encoding="utf-8").split()
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.sshd.port} {host_key[0]} {host_key[1]}\n", encoding="utf-8"
        )

    def close(self) -> None:
        self.sshd.stop()


class AnsibleSsh(Ansible):
    """Ansible's ``ssh`` connection to each target through the bench's sshd."""

    def __init__(self, root: Path, count: int, package: Package, server: SshServer) -> None:
        super().__init__(root, count, package)
        self.server = server
        home = self.root / "home"
        (home / "cp").mkdir(parents=True, exist_ok=True)
        ssh_args = (
            "-o ControlMaster=auto -o ControlPersist=120s -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={server.known_hosts} -o StrictHostKeyChecking=yes"
        )
        config = self.config.read_text(encoding="utf-8").replace(
            f"interpreter_python = {VENV / 'bin' / 'python'}\n",
            "interpreter_python = /usr/bin/python3\n",
        )
        config += (
            f"\n[ssh_connection]\nssh_args = {ssh_args}\ncontrol_path_dir = {home / 'cp'}\n"
            "pipelining = True\n"
        )
        self.config.write_text(config, encoding="utf-8")

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        args, env = super().command(n)
        inventory = self.root / f"hosts-{n}.ini"
        lines = ["[targets]"]
        lines += [
            f"{t.name} ansible_host=127.0.0.1 ansible_port={self.server.sshd.port} "
            f"ansible_user={self.server.sshd.user} "
            f"ansible_ssh_private_key_file={self.server.key_file} target_dir={t}"
            for t in self.targets[:n]
        ]
        inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return args, env


class PyinfraSsh(Pyinfra):
    """pyinfra's ``@ssh`` connector to each target through the bench's sshd."""

    def __init__(self, root: Path, count: int, package: Package, server: SshServer) -> None:
        super().__init__(root, count, package)
        self.server = server

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        args, env = super().command(n)
        data: dict[str, Any] = {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.server.sshd.port,
            "ssh_user": self.server.sshd.user,
            "ssh_key": str(self.server.key_file),
            "ssh_known_hosts_file": str(self.server.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        hosts = [(t.name, {**data, "target_dir": str(t)}) for t in self.targets[:n]]
        (self.root / f"inventory_{n}.py").write_text(f"targets = {hosts!r}\n", encoding="utf-8")
        return args, env


class OctoSsh(Octo):
    """One appliance, N targets of communication style ``ssh``, no agent."""

    def __init__(
        self, root: Path, count: int, package: Package, data_dir: Path, server: SshServer
    ) -> None:
        super().__init__(root, count, package, data_dir)
        self.server = server

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            appliance = start_appliance(self.data_dir)
            self._server = appliance
            self._stack.callback(appliance.__exit__, None, None, None)
            key = create_key(self.data_dir)
            client = self._stack.enter_context(
                appliance.http2_client(headers={"X-Api-Key": key}, timeout=120)
            )
            self._client = client
            self._call(client, "POST", "/environments", json={"name": ENVIRONMENT})
            self.names = [f"ssh-{i:03d}" for i in range(self.count)]
            self.homes = [self.root / "targets" / name for name in self.names]
            for name, home in zip(self.names, self.homes, strict=True):
                home.mkdir(parents=True, exist_ok=True)
                self._call(client, "POST", "/targets", json=self._target(name, home))
            warm = run_script(client, self.names, timeout=300)
        except SystemExit as exc:
            raise Unavailable(f"the appliance did not start: {exc}") from None
        if warm.state != "success":
            raise Unavailable(f"the warm-up script failed on {warm.failed_targets[:5]}")
        print(
            f"  octo: appliance + {self.count} SSH targets ready and warmed up (connections "
            f"open, runner uploaded) in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        self._prepare_release(client)

    def _deploy(self, n: int) -> float:
        """The deployment, plus the appliance process's CPU seconds it took (user + system,
        its threads included): less sensitive to the machine's load than the wall time."""
        process = psutil.Process(self._server.process.pid)  # type: ignore[union-attr]
        before = process.cpu_times()
        elapsed = super()._deploy(n)
        after = process.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        load = os.getloadavg()[0]
        self.last_detail = f"{self.last_detail} appliance CPU {cpu:.1f} s, load {load:.1f}".strip()
        return elapsed

    def _target(self, name: str, home: Path) -> dict[str, Any]:
        return {
            "name": name,
            "environments": [ENVIRONMENT],
            "roles": [ROLE],
            "communication_style": "ssh",
            "transport_settings": {
                "host": "127.0.0.1",
                "port": self.server.sshd.port,
                "user": self.server.sshd.user,
                "host_key_fingerprint": self.server.sshd.host_key_fingerprint,
                "directory": str(home),
                "private_key": self.server.sshd.client_key,
            },
        }


def describe_ssh_commands() -> dict[str, str]:
    return {
        "octo": "appliance, N targets of communication style ssh (asyncssh, no agent)",
        "ansible": "ansible-playbook -f N (copy + shell, ssh connection, ControlPersist,"
        " pipelining)",
        "pyinfra": "pyinfra -y --parallel N (files.put + server.shell under setsid, @ssh)",
    }


def print_overheads(medians: Mapping[tuple[str, int, str], float], sizes: Sequence[int]) -> None:
    """Each tool's time minus the floor's, and Octo's overhead as a share of the faster peer's."""
    print("\norchestration overhead over SSH (median time minus the floor's), seconds")
    for n in sizes:
        for phase in ("cold", "warm"):
            floor = medians.get(("floor", n, phase))
            if floor is None:
                continue
            over = {
                name: medians[(name, n, phase)] - floor
                for name in ("octo", "ansible", "pyinfra")
                if (name, n, phase) in medians
            }
            line = "  ".join(f"{name} {value:6.2f}" for name, value in over.items())
            peers = {k: v for k, v in over.items() if k != "octo"}
            if "octo" in over and peers:
                best = min(peers, key=lambda k: peers[k])
                share = over["octo"] / peers[best] if peers[best] > 0 else float("inf")
                verdict = "met" if share < GOAL_OVERHEAD_SHARE else "missed"
                line += f"  octo/{best} {share:.2f}x ({verdict}, goal < {GOAL_OVERHEAD_SHARE}x)"
            print(f"  N={n:<3} {phase}: {line}")
