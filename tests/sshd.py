"""A real OpenSSH server of the tests' own: ``sshd`` on a free 127.0.0.1 port, with a host
key, config and ``authorized_keys`` generated in a temp dir (the machine's sshd and its
config are never touched).

Logins: the current user with :attr:`Sshd.client_key` (an ed25519 key; when running as root,
``PermitRootLogin yes``), the same user with :attr:`Sshd.no_python_key` whose
``authorized_keys`` line sets ``PATH=/nonexistent`` (a target without python3, through
``PermitUserEnvironment``), and, when the tests run as root, the password login of
:data:`PASSWORD_USER`, an account made here with ``useradd`` and given a fresh random
password at every start (``UsePAM no``: sshd checks ``/etc/shadow`` itself). ``sshd`` needs
``/run/sshd`` (its privilege-separation dir), created when missing. build/test.sh installs
``openssh-server`` when ``sshd`` is missing.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import psutil
import pytest

from tests.ports import free_port

#: ``OCTO_TEST_SSHD`` names another sshd (tests/unit/test_ssh_skip.py names a missing one)
SSHD = os.environ.get("OCTO_TEST_SSHD") or shutil.which("sshd") or "/usr/sbin/sshd"
PASSWORD_USER = "octo-sshtest"

CONFIG = """\
ListenAddress 127.0.0.1:{port}
HostKey {root}/host_ed25519
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitUserEnvironment yes
Subsystem sftp internal-sftp
MaxSessions 1000
MaxStartups 200
LogLevel VERBOSE
"""


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None


#: the mark of every test that starts an sshd: skipped, saying why, where there is none
NEEDS_SSHD = pytest.mark.skipif(not available(), reason="no sshd (build/test.sh installs it)")


@dataclass
class Sshd:
    root: Path
    port: int = 0
    user: str = field(default_factory=getpass.getuser)
    client_key: str = ""
    no_python_key: str = ""
    password: str = ""
    host_key_fingerprint: str = ""
    process: subprocess.Popen[bytes] | None = None

    @property
    def password_user(self) -> str | None:
        return PASSWORD_USER if self.password else None

    def start(self) -> Sshd:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        host_key = self.root / "host_ed25519"
        if not host_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
            )
        public = asyncssh.read_public_key(str(host_key) + ".pub")
        self.host_key_fingerprint = public.get_fingerprint("sha256")
        key = asyncssh.generate_private_key("ssh-ed25519")
        restricted = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = key.export_private_key().decode()
        self.no_python_key = restricted.export_private_key().decode()
        (self.root / "authorized_keys").write_text(
            key.export_public_key().decode()
            + 'environment="PATH=/nonexistent" '
            + restricted.export_public_key().decode()
        )
        if os.geteuid() == 0:
            self.password = _password_user()
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        config = self.root / "sshd_config"
        config.write_text(CONFIG.format(port=self.port, root=self.root))
        with (self.root / "sshd.log").open("ab") as log:
            self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return self
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 15 s")

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes (killing them drops the connections)."""
        assert self.process is not None
        try:
            return list(psutil.Process(self.process.pid).children())
        except psutil.Error:
            return []

    def drop_connections(self) -> None:
        for child in self.sessions():
            with contextlib.suppress(psutil.Error):
                child.kill()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.drop_connections()
            self.process.terminate()
            self.process.wait(10)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _password_user() -> str:
    """Make :data:`PASSWORD_USER` (once) and give it a fresh password; the password."""
    try:
        import pwd

        pwd.getpwnam(PASSWORD_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-m", "-s", "/bin/sh", PASSWORD_USER], check=True, capture_output=True
        )
    password = secrets.token_urlsafe(16)
    subprocess.run(["chpasswd"], input=f"{PASSWORD_USER}:{password}\n".encode(), check=True)
    return password
