"""Fixtures for the ssh transport against a real sshd (tests/sshd.py): one server per module,
a transport per test reading its targets from a dict (the database's part is tested through
the API in tests/integration/test_ssh_targets.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.builds.runner import RunnerBuild, prepare_runner
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.transports.base import TargetAddress
from octo_appliance.transports.ssh import SshTransport
from octo_appliance.transports.ssh.settings import SshCredentials, SshTarget, parse_fingerprint
from tests.sshd import NEEDS_SSHD, Sshd


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs an sshd. A ``pytestmark`` in a conftest marks nothing (pytest reads
    it from test modules only), and this hook sees the whole session's items: mark ours."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(NEEDS_SSHD)


class Targets:
    """A target source over a dict (what the appliance reads from its database)."""

    def __init__(self) -> None:
        self.rows: dict[str, SshTarget] = {}
        self.loads = 0

    def load(self, target_id: str) -> SshTarget:
        self.loads += 1
        return self.rows[target_id]

    def record_host_key(self, target_id: str, fingerprint: str) -> None:
        row = self.rows[target_id]
        if not row.fingerprint:
            self.rows[target_id] = dataclasses.replace(row, fingerprint=fingerprint)


@dataclasses.dataclass
class Rig:
    sshd: Sshd
    transport: SshTransport
    targets: Targets
    root: Path

    def add(self, name: str, **overrides: Any) -> TargetAddress:
        """A target on the test sshd (key login as the current user, own directory)."""
        fields: dict[str, Any] = {
            "id": f"tgt_{name}",
            "name": name,
            "host": "127.0.0.1",
            "port": self.sshd.port,
            "user": self.sshd.user,
            "fingerprint": parse_fingerprint(self.sshd.host_key_fingerprint),
            "directory": str(self.root / name),
            "credentials": SshCredentials(private_key=self.sshd.client_key),
        }
        fields.update(overrides)
        self.targets.rows[fields["id"]] = SshTarget(**fields)
        return TargetAddress(id=fields["id"], name=name, communication_style="ssh")


@pytest.fixture(scope="session")
def runner_build(tmp_path_factory: pytest.TempPathFactory) -> RunnerBuild:
    return prepare_runner(tmp_path_factory.mktemp("runner"))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
async def rig(sshd: Sshd, runner_build: RunnerBuild, tmp_path: Path) -> AsyncIterator[Rig]:
    targets = Targets()
    transport = SshTransport(TransportContext("ssh", runner_build))
    transport.configure(targets)
    yield Rig(sshd, transport, targets, tmp_path)
    await transport.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
