"""The built-in worker: the ``local`` transport runs the runner on the appliance itself.

Steps that run "on the appliance" (``run_on: appliance``: cloud and PaaS work where no agent
can be installed) go through here. It is the agent's own runner host
(:class:`~octo_appliance.agent.runner_host.RunnerHost`) used in-process: the same runner build
the appliance serves to agents, the same stdin/stdout protocol, the same process-tree
cancellation; each run gets a fresh work dir ``<worker dir>/work/<task id>-<n>`` that is
removed afterwards.

Settings (docs/configuration.md): ``builtin_worker`` (false: every appliance step fails with
a message saying so), ``worker_user`` (run the runner as this OS user: ``user=``/``group=`` of
the child when the appliance runs as root, else ``sudo -n -u USER``), ``worker_dir``.

The runner's environment never carries the appliance's ``OCTO_*`` variables (a master key or
database password given by environment must not reach a script). Only the worker's own
address is served: a target registered with communication style ``local`` is refused, so
creating a target can never be a way to run code on the appliance.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import pwd
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from octo_runner import PROTOCOL_VERSION as RUNNER_PROTOCOL

from octo_appliance.agent.runner_host import LINE_LIMIT, RunnerHost
from octo_appliance.agent.workdirs import WorkDirs
from octo_appliance.comms import CallFailed, Response
from octo_appliance.exceptions import ConfigError
from octo_appliance.hookspecs import hookimpl
from octo_appliance.plugins import TransportRegistry
from octo_appliance.transports.base import (
    EventSink,
    RunnerCommand,
    RunnerResult,
    TargetAddress,
    Transport,
)

if TYPE_CHECKING:
    from octo_appliance.transports.network import AgentNetwork

#: the one address this transport serves
WORKER = TargetAddress(id="appliance", name="appliance", communication_style="local")
KILL_MARGIN = 5.0
DEFAULT_SCRIPT_GRACE = 10.0
#: where the runner of another user looks for python3 (the appliance's own interpreter may
#: live in a directory that user cannot read)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class WorkerUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> WorkerUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(
                f"worker_user '{name}' is not a user on this machine",
                hint="create the user, or leave worker_user empty to run as the appliance",
            ) from None
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def worker_environment(user: WorkerUser | None) -> dict[str, str]:
    """The appliance's environment minus every ``OCTO_*`` variable (and, for another user,
    with that user's HOME/USER/LOGNAME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
        env["PATH"] = env.get("PATH") or SYSTEM_PATH
    return env


class WorkerHost(RunnerHost):
    """The agent's runner host, starting the runner as the worker user."""

    def __init__(self, user: WorkerUser | None) -> None:
        super().__init__()
        self.user = user

    def command(self, pyz: Path) -> tuple[list[str], dict[str, Any]]:
        """The argv and the extra process options that start the runner."""
        user = self.user
        if user is None or user.uid == os.geteuid():
            return [sys.executable, "-I", "-S", str(pyz)], {}
        python = shutil.which("python3", path=SYSTEM_PATH)
        if python is None:
            raise CallFailed(
                "runner_failed",
                "no python3 in /usr/local/bin, /usr/bin or /bin for the worker user",
                hint="install python3 (3.9 or newer) on the appliance",
            )
        if os.geteuid() == 0:
            options = {"user": user.uid, "group": user.gid, "extra_groups": []}
            return [python, "-I", "-S", str(pyz)], options
        return ["sudo", "-n", "-u", user.name, "--", python, "-I", "-S", str(pyz)], {}

    async def spawn(self, pyz: Path, work_dir: Path) -> asyncio.subprocess.Process:
        argv, options = self.command(pyz)
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=work_dir,
            env=worker_environment(self.user),
            start_new_session=True,
            limit=LINE_LIMIT,
            **options,
        )


class LocalTransport(Transport):
    name = "local"
    summary = "The appliance's built-in worker: runs the runner on the appliance itself"

    def __init__(self, network: AgentNetwork) -> None:
        super().__init__(network)
        self.enabled = True
        self.user: WorkerUser | None = None
        self.root: Path | None = None
        self.host = WorkerHost(None)
        self._runner_lock = asyncio.Lock()

    def configure(self, *, enabled: bool, root: Path, user: str | None) -> None:
        """Apply the settings (called once at start; a bad user stops the start)."""
        self.enabled = enabled
        self.root = root
        self.user = WorkerUser.lookup(user) if user else None
        self.host = WorkerHost(self.user)

    # -- the interface -------------------------------------------------------------------

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        on_event: EventSink | None = None,
        upload: Path | None = None,
        download_dir: Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        raise CallFailed(
            "unknown_method",
            f"the built-in worker does not handle {method!r}: it only runs runner commands",
            hint="use an agent target for package transfers and file fetches",
        )

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        return {"name": "built-in worker", "enabled": self.enabled, "user": self.user_name}

    @property
    def user_name(self) -> str:
        return self.user.name if self.user else pwd.getpwuid(os.geteuid()).pw_name

    async def run_runner(
        self, target: TargetAddress, command: RunnerCommand, on_event: EventSink | None = None
    ) -> RunnerResult:
        if target.id != WORKER.id:
            return _failed(
                f"target {target.name} uses communication style 'local', which only runs "
                "steps on the appliance itself (run_on: appliance); give it an agent"
            )
        if not self.enabled:
            return _failed(
                "the built-in worker is disabled on this appliance (setting builtin_worker "
                "is false): steps that run on the appliance cannot run"
            )
        if self.root is None:
            raise RuntimeError("the local transport was not configured")
        pyz = await self._runner()
        work_dir = await asyncio.to_thread(self._work_dir, command.task_id)
        grace = command.arguments.get("cancel_grace_seconds", DEFAULT_SCRIPT_GRACE)
        kill_grace = (
            grace if isinstance(grace, int | float) else DEFAULT_SCRIPT_GRACE
        ) + KILL_MARGIN
        document = {
            "protocol": RUNNER_PROTOCOL,
            "command": command.command,
            "arguments": command.arguments,
            "variables": command.variables,
            "work_dir": str(work_dir),
            "context": {**command.context, "task_id": command.task_id},
        }

        async def emit(event: dict[str, Any]) -> None:
            if on_event is not None:
                outcome = on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome

        try:
            raw = await self.host.run(
                pyz,
                document,
                work_dir=work_dir,
                task_id=command.task_id,
                emit=emit,
                kill_grace=kill_grace,
            )
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, work_dir, True))
        return RunnerResult.from_json(raw)

    # -- files ---------------------------------------------------------------------------

    def _work_dir(self, task_id: str) -> Path:
        assert self.root is not None
        _prepare_root(self.root, shared=self.user is not None)
        path = WorkDirs(self.root / "work").create(task_id)
        if self.user is not None and os.geteuid() == 0:
            os.chown(path, self.user.uid, self.user.gid)
        return path

    async def _runner(self) -> Path:
        """The runner build, copied where the worker user can read it."""
        assert self.root is not None
        build = self.network.runner
        if self.user is None:
            return Path(build.path)
        target = self.root / "runners" / f"octo-runner-{build.version}.pyz"
        async with self._runner_lock:
            if not await asyncio.to_thread(_same_file, target, build.sha256):
                await asyncio.to_thread(_install, Path(build.path), target, self.root)
        return target


def _prepare_root(root: Path, *, shared: bool) -> None:
    """The worker dir: 0700, or 0711 when another user must reach its work dirs (they are
    0700 and owned by that user, so one user's runs are not readable by another)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711 if shared else 0o700)
    work = root / "work"
    work.mkdir(exist_ok=True)
    os.chmod(work, 0o711 if shared else 0o700)


def _same_file(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except FileNotFoundError:
        return False


def _install(source: Path, target: Path, root: Path) -> None:
    _prepare_root(root, shared=True)
    target.parent.mkdir(exist_ok=True)
    os.chmod(target.parent, 0o755)
    partial = target.with_suffix(".partial")
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o644)
    os.replace(partial, target)


def _failed(message: str) -> RunnerResult:
    return RunnerResult(
        exit_code=1, success=False, canceled=False, message=message, output_variables=[], details={}
    )


def default_worker_dir(data_dir: Path, user: str | None) -> Path:
    """``<data dir>/worker``; beside the data dir (``<data dir>-worker``) when another user
    runs the runner, because the data dir itself is 0700."""
    return data_dir.parent / f"{data_dir.name}-worker" if user else data_dir / "worker"


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(LocalTransport)


__all__ = ["WORKER", "LocalTransport", "WorkerHost", "WorkerUser", "default_worker_dir"]
