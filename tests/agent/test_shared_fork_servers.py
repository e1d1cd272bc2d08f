"""One runner fork server per agent process and build, shared by its identities
(``octo_appliance.agent.forkshare``), with real fork servers and real runners.

Each identity keeps its own copy of a build in its home, so these hosts get their own copy
each, at their own path: the server is shared by content. What a forked runner takes from
its identity (its work dir) must be the identity's, not the server's starter's; what it takes
from the server's start (environment, options) must then be the same for every host using
it, or the hosts get servers of their own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from octo_appliance.agent import quiet
from octo_appliance.agent.forkshare import Command
from octo_appliance.agent.runner_host import RunnerHost

from .fork_support import (
    HELD,
    RUNNER,
    Task,
    fork_server,
    fork_servers,
    gone,
    parent_of_runner,
    run,
    wait_gone,
    warm_fork_server,
)

#: the runner's pid, its parent's, and the directory the script runs in
WHERE = f'{RUNNER}\necho "pwd $PWD"'


@pytest.fixture(autouse=True)
def busy_machine_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fork servers start when this process is quiet even if the machine is busy."""
    monkeypatch.setattr(quiet, "IDLE_SHARE", 0.0)


class Identity:
    """One agent identity of the process: a home with its own copy of the build, a host."""

    def __init__(self, root: Path, build: Path, host: RunnerHost | None = None) -> None:
        self.root = root
        self.pyz = root / "runners" / build.name
        self.pyz.parent.mkdir(parents=True)
        shutil.copy(build, self.pyz)
        self.host = host or RunnerHost()
        self._tasks = 0

    def work(self) -> Path:
        self._tasks += 1
        return self.root / "work" / f"task{self._tasks}-1"  # warm_fork_server takes t1-1

    async def task(self, body: str) -> Task:
        return await run(self.host, self.pyz, self.work(), body)

    def start(self, body: str) -> Task:
        return Task(self.host, self.pyz, self.work(), body)

    async def parent_of_runner(self) -> int:
        return await parent_of_runner(self.host, self.pyz, self.work())


@pytest.fixture
async def identities(tmp_path: Path, pyz: Path) -> AsyncIterator[list[Identity]]:
    made = [Identity(tmp_path / name, pyz) for name in ("a", "b")]
    yield made
    for identity in made:
        await identity.host.terminate_all()


def other_build(pyz: Path, where: Path) -> Path:
    """A build of other content (a zipapp still runs with more bytes before its archive)."""
    where.mkdir(parents=True)
    path = where / pyz.name
    path.write_bytes(b"#!/usr/bin/env python3\n# another build\n" + pyz.read_bytes())
    return path


async def test_two_identities_of_a_process_share_one_fork_server(
    identities: list[Identity],
) -> None:
    a, b = identities
    server = await warm_fork_server(a.host, a.pyz, a.root)

    # b's first task: its own copy of the same build, forked at once from a's server
    first_of_b = await b.task(WHERE)

    assert int(first_of_b.said("parent ")) == server
    assert b.host.fork_pool.server is a.host.fork_pool.server
    assert fork_servers() == [server]
    assert await a.parent_of_runner() == server


async def test_a_runner_forked_for_an_identity_runs_in_that_identitys_work_dir(
    identities: list[Identity],
) -> None:
    a, b = identities
    server = await warm_fork_server(a.host, a.pyz, a.root)
    held = {identity.root.name: identity.start(HELD) for identity in identities}
    runners = {
        name: psutil.Process(int(await task.saying("runner "))) for name, task in held.items()
    }

    for name, runner in runners.items():
        assert runner.ppid() == server
        assert runner.cwd() == str(held[name].work_dir)
        assert held[name].work_dir.is_relative_to(a.root if name == "a" else b.root)
    for task in held.values():
        task.release()
        assert (await task.outcome())["success"]
    said = {identity.root.name: (await identity.task(WHERE)) for identity in identities}
    assert said["a"].said("pwd ") == str(said["a"].work_dir)
    assert said["b"].said("pwd ") == str(said["b"].work_dir)
    assert int(said["b"].said("parent ")) == server


async def test_closing_one_host_leaves_the_other_hosts_runners_and_server(
    identities: list[Identity],
) -> None:
    a, b = identities
    server = await warm_fork_server(a.host, a.pyz, a.root)
    held = b.start(HELD)
    runner = int(await held.saying("runner "))
    assert psutil.Process(runner).ppid() == server

    await a.host.terminate_all()  # a's agent identity stops; b's runs on

    assert not gone(server) and not gone(runner)
    held.release()
    outcome = await held.outcome()
    assert outcome["success"] and outcome["exit_code"] == 0, outcome
    assert await b.parent_of_runner() == server
    assert await a.parent_of_runner() == os.getpid()  # a closed host forks no more

    await b.host.terminate_all()  # the last host using it: the server ends
    await wait_gone(server, "the fork server after its last host closed")


async def test_different_builds_get_their_own_servers_and_an_unused_one_ends(
    identities: list[Identity], tmp_path: Path
) -> None:
    """Each host keeps the server of the build it used last: two builds in use at once (an
    upgrade reaching one identity first) are two servers; once no host uses a build last,
    its server ends."""
    a, b = identities
    b.pyz = other_build(a.pyz, tmp_path / "b-new" / "runners")
    old = await warm_fork_server(a.host, a.pyz, a.root)
    new = await warm_fork_server(b.host, b.pyz, b.root / "new")

    assert new != old
    assert sorted(fork_servers()) == sorted([old, new])
    assert await a.parent_of_runner() == old and await b.parent_of_runner() == new

    a.pyz = a.root / "runners-new" / b.pyz.name
    a.pyz.parent.mkdir()
    shutil.copy(b.pyz, a.pyz)  # a upgrades to b's build: a copy of its own, same content

    assert await a.parent_of_runner() == new
    await wait_gone(old, "the fork server no host uses")
    assert fork_servers() == [new]


async def test_hosts_that_start_runners_differently_do_not_share(
    identities: list[Identity], tmp_path: Path, pyz: Path
) -> None:
    """A forked runner inherits its server's environment: a host whose runners get another
    environment (the built-in worker's user, say) has a server of its own."""

    class Marked(RunnerHost):
        def runner_command(self, pyz: Path) -> Command:
            argv, env, options = super().runner_command(pyz)
            return argv, {**env, "OCTO_TEST_IDENTITY": "marked"}, options

    a = identities[0]
    marked = Identity(tmp_path / "marked", pyz, Marked())
    try:
        plain = await warm_fork_server(a.host, a.pyz, a.root)
        await marked.task("true")
        own = await fork_server(marked.host, other_than=plain)

        body = f'{RUNNER}\necho "identity ${{OCTO_TEST_IDENTITY:-plain}}"'
        mine, theirs = await a.task(body), await marked.task(body)

        assert (int(mine.said("parent ")), mine.said("identity ")) == (plain, "plain")
        assert (int(theirs.said("parent ")), theirs.said("identity ")) == (own, "marked")
    finally:
        await marked.host.terminate_all()
