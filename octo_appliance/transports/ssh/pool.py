"""One SSH connection per target, opened on first use, reused by every step, reopened when it
drops; the host key is checked against the pinned fingerprint before any credential is sent.

Pinning: the server's host key is checked during key exchange, before authentication, so a
server with another key never sees the password or a signature. A changed key refuses the
connection naming both fingerprints. With no fingerprint pinned, the connection is refused
unless the target allows trust on first use; then the key presented is recorded (through
:class:`TargetSource`) and pinned from then on.

Every channel a task opens (the runner, SFTP, a kill) is multiplexed on the one connection;
keepalives find a dead peer within about 45 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import asyncssh

from octo_appliance.comms import CallFailed
from octo_appliance.transports.ssh.settings import SshTarget, openssh_fingerprint

log = logging.getLogger("octo_appliance.ssh")
#: asyncssh logs every channel at INFO; the appliance's log says what matters in its own words
logging.getLogger("asyncssh").setLevel(logging.WARNING)
T = TypeVar("T")
CONNECT_TIMEOUT = 20.0
KEEPALIVE_SECONDS = 15.0
#: AES-GCM first: with ``cryptography`` it runs at several times the speed of asyncssh's
#: chacha20-poly1305 (its default first choice), which otherwise limits package uploads
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
HOST_KEY_HINT = (
    "if the server's key was changed on purpose, check the new fingerprint on the server "
    "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and set it on the target "
    "(PUT /api/v1/targets/{id} with transport_settings.host_key_fingerprint)"
)


class TargetSource(Protocol):
    """Where the transport reads targets (the appliance's database and vault)."""

    def load(self, target_id: str) -> SshTarget:
        """The target as stored, credentials opened (blocking: called in a worker thread)."""

    def record_host_key(self, target_id: str, fingerprint: str) -> None:
        """Pin the host key first seen (trust on first use), unless one is pinned already."""


class _Client(asyncssh.SSHClient):
    """Checks the host key against the pin and remembers what the server presented."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self.presented = ""
        self.key_type = ""

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.presented = hashlib.sha256(key.public_data).hexdigest()
        self.key_type = key.get_algorithm()
        if self.target.fingerprint:
            return self.presented == self.target.fingerprint
        return self.target.trust_on_first_use


@dataclass
class Pooled:
    """An open connection and what was learnt on it (the remote home, runners present)."""

    target: SshTarget
    conn: asyncssh.SSHClientConnection
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        return not self.conn.is_closed()

    async def sftp(self) -> asyncssh.SFTPClient:
        """The connection's SFTP session, opened on first use and shared by its tasks."""
        lock = self.facts.setdefault("sftp_lock", asyncio.Lock())
        async with lock:
            client = self.facts.get("sftp")
            if not isinstance(client, asyncssh.SFTPClient):
                client = await self.conn.start_sftp_client()
                self.facts["sftp"] = client
            return client


class ConnectionPool:
    def __init__(self, source: TargetSource) -> None:
        self.source = source
        self._pooled: dict[str, Pooled] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, target_id: str) -> Pooled:
        """The target's open connection (opened, or reopened after a drop, as needed)."""
        lock = self._locks.setdefault(target_id, asyncio.Lock())
        async with lock:
            target = await asyncio.to_thread(self.source.load, target_id)
            pooled = self._pooled.get(target_id)
            if pooled is not None and pooled.open and pooled.target.same_endpoint(target):
                pooled.target = target
                return pooled
            if pooled is not None:
                pooled.conn.close()
            pooled = Pooled(target, await self._connect(target))
            self._pooled[target_id] = pooled
            return pooled

    async def using(self, target_id: str, work: Callable[[Pooled], Awaitable[T]]) -> T:
        """Run ``work`` on the target's connection; once more on a fresh one if it dropped
        meanwhile (for work that may safely be repeated: probes, uploads, lookups)."""
        pooled = await self.get(target_id)
        try:
            return await work(pooled)
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError):
            log.info("the SSH connection to %s dropped; reconnecting", pooled.target.label)
            pooled.conn.close()
            return await work(await self.get(target_id))

    async def close(self) -> None:
        for pooled in list(self._pooled.values()):
            pooled.conn.close()
        await asyncio.gather(
            *(p.conn.wait_closed() for p in self._pooled.values()), return_exceptions=True
        )
        self._pooled.clear()

    async def _connect(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        client = _Client(target)
        creds = target.credentials
        options: dict[str, Any] = {"client_keys": None, "password": creds.password or None}
        if creds.private_key:
            key = asyncssh.import_private_key(creds.private_key, creds.passphrase or None)
            options = {"client_keys": [key], "password": None}
        try:
            conn, _ = await asyncssh.create_connection(
                lambda: client,
                target.host,
                target.port,
                username=target.user,
                known_hosts=([], [], []),
                config=None,
                agent_path=None,
                x509_trusted_certs=None,
                connect_timeout=CONNECT_TIMEOUT,
                keepalive_interval=KEEPALIVE_SECONDS,
                keepalive_count_max=3,
                encryption_algs=ENCRYPTION_ALGS,
                **options,
            )
        except asyncssh.HostKeyNotVerifiable:
            raise _host_key_refused(target, client) from None
        except asyncssh.PermissionDenied:
            raise CallFailed(
                "ssh_auth_failed",
                f"{target.label} refused the login of {target.user!r} with the "
                f"{creds.kind.replace('_', ' ')} stored for the target",
                hint="check the user and set the right credentials on the target",
            ) from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise CallFailed(
                "ssh_unreachable",
                f"cannot open an SSH connection to {target.label}: {reason or type(exc).__name__}",
                hint="check the host, the port and that sshd runs there",
            ) from None
        if not target.fingerprint:
            await asyncio.to_thread(self.source.record_host_key, target.id, client.presented)
            log.warning(
                "trusted the host key of %s on first use: %s %s",
                target.label,
                client.key_type,
                openssh_fingerprint(client.presented),
            )
        return conn


def _host_key_refused(target: SshTarget, client: _Client) -> CallFailed:
    presented = f"{client.key_type} {openssh_fingerprint(client.presented)}".strip()
    if target.fingerprint:
        log.warning(
            "refused %s: host key %s, pinned %s",
            target.label,
            presented,
            openssh_fingerprint(target.fingerprint),
        )
        return CallFailed(
            "host_key_mismatch",
            f"the host key of {target.label} changed: it presented {presented}, the pinned "
            f"one is {openssh_fingerprint(target.fingerprint)}; the connection was refused "
            "before logging in",
            hint=HOST_KEY_HINT,
        )
    return CallFailed(
        "host_key_unknown",
        f"{target.label} has no pinned host-key fingerprint (it presented {presented}); "
        "the connection was refused before logging in",
        hint="set transport_settings.host_key_fingerprint on the target, or "
        "trust_on_first_use: true to record the key presented at the first connection",
    )
