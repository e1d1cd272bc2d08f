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

The worker is a deployment target like any agent, so it has an agent's package layout beside
its work dirs: ``cache/`` (a :class:`~octo_appliance.agent.cache.PackageCache`: packages by
SHA-256, deltas applied locally), ``applications/`` and ``journal.json``, named to the runner
in its document's context exactly as an agent names its own. The package operations
(``has_file``, ``upload``, ``cached_versions``, ``upload_delta``) work on that cache
in-process; ``call`` still refuses everything else (there is no agent to call).

The runner's environment never carries the appliance's ``OCTO_*`` variables (a master key or
database password given by environment must not reach a script). Only the worker's own
address is served: a target registered with communication style ``local`` is refused, so
creating a target can never be a way to run code on the appliance.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import os
import pwd
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from octo_runner import PROTOCOL_VERSION as RUNNER_PROTOCOL

from octo_appliance.agent.cache import PackageCache, finish_in_thread
from octo_appliance.agent.runner_host import Command, RunnerHost
from octo_appliance.agent.workdirs import WorkDirs
from octo_appliance.comms import CallFailed, Response, UploadSource
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

    def can_fork(self) -> bool:
        """A fork server is started as the worker user like a runner, except through sudo,
        which closes the control socket it would be handed (and whose runners the
        appliance could not signal)."""
        user = self.user
        return user is None or user.uid == os.geteuid() or os.geteuid() == 0

    def runner_command(self, pyz: Path) -> Command:
        """The argv, environment and extra process options that start the runner."""
        user = self.user
        env = worker_environment(user)
        if user is None or user.uid == os.geteuid():
            return [sys.executable, "-I", "-S", str(pyz)], env, {}
        python = shutil.which("python3", path=SYSTEM_PATH)
        if python is None:
            raise CallFailed(
                "runner_failed",
                "no python3 in /usr/local/bin, /usr/bin or /bin for the worker user",
                hint="install python3 (3.9 or newer) on the appliance",
            )
        if os.geteuid() == 0:
            options = {"user": user.uid, "group": user.gid, "extra_groups": []}
            return [python, "-I", "-S", str(pyz)], env, options
        return ["sudo", "-n", "-u", user.name, "--", python, "-I", "-S", str(pyz)], env, {}


class LocalTransport(Transport):
    name = "local"
    summary = "The appliance's built-in worker: runs the runner on the appliance itself"

    def __init__(self, network: AgentNetwork) -> None:
        super().__init__(network)
        self.enabled = True
        self.user: WorkerUser | None = None
        self.root: Path | None = None
        self.host = WorkerHost(None)
        self.cache: PackageCache | None = None
        self._runner_lock = asyncio.Lock()

    def configure(self, *, enabled: bool, root: Path, user: str | None) -> None:
        """Apply the settings (called once at start; a bad user stops the start)."""
        self.enabled = enabled
        self.root = root
        self.user = WorkerUser.lookup(user) if user else None
        self.host = WorkerHost(self.user)
        self.cache = PackageCache(root / "cache")

    async def close(self) -> None:
        """Stop the worker's runners still alive and end its fork server."""
        await self.host.terminate_all()

    @property
    def package_paths(self) -> dict[str, str]:
        """The paths the runner's context names (absolute, like an agent's)."""
        assert self.root is not None
        root = self.root.absolute()
        return {
            "cache_dir": str(root / "cache"),
            "applications_dir": str(root / "applications"),
            "journal_file": str(root / "journal.json"),
        }

    # -- the interface -------------------------------------------------------------------

    async def call(
        self,
        target: TargetAddress,
        method: str,
        params: dict[str, Any],
        *,
        on_event: EventSink | None = None,
        upload: UploadSource | None = None,
        download_dir: Path | None = None,
        timeout: float | None = None,
    ) -> Response:
        raise CallFailed(
            "unknown_method",
            f"the built-in worker does not handle {method!r}: it runs runner commands and "
            "keeps a package cache, nothing else",
            hint="use an agent target for file fetches",
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
            "context": {**command.context, "task_id": command.task_id, **self.package_paths},
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

    # -- the package cache ---------------------------------------------------------------

    async def has_file(self, target: TargetAddress, sha256: str) -> bool:
        cache = await self._cache(target)
        return await asyncio.to_thread(cache.lookup, sha256) is not None

    async def cached_versions(self, target: TargetAddress, package_id: str) -> list[dict[str, Any]]:
        cache = await self._cache(target)
        return await asyncio.to_thread(cache.versions_of, package_id)

    async def upload(
        self,
        target: TargetAddress,
        content: UploadSource,
        sha256: str,
        name: str,
        *,
        length: int | None = None,
        package_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Copy the content into the worker's cache (checked by length and SHA-256)."""
        cache = await self._cache(target)
        scratch = await finish_in_thread(_spool, content, self._scratch_dir())
        try:
            if length is None:
                length = scratch.stat().st_size
            stored = await cache.store(
                scratch, sha256, length, name, package_id=package_id, version=version
            )
            await asyncio.to_thread(self._hand_over, stored)
        finally:
            scratch.unlink(missing_ok=True)

    async def upload_delta(
        self,
        target: TargetAddress,
        base_sha256: str,
        delta: UploadSource,
        sha256: str,
        length: int,
        name: str,
        package_id: str | None = None,
        version: str | None = None,
    ) -> None:
        """Apply the delta to the worker's cached base, as an agent does (same errors)."""
        cache = await self._cache(target)
        scratch = self._scratch_dir()
        spooled = await finish_in_thread(_spool, delta, scratch)
        try:
            stored = await cache.patch(
                spooled,
                base_sha256,
                sha256,
                length,
                name,
                scratch=scratch,
                package_id=package_id,
                version=version,
            )
            await asyncio.to_thread(self._hand_over, stored)
        finally:
            spooled.unlink(missing_ok=True)

    async def _cache(self, target: TargetAddress) -> PackageCache:
        """The worker's cache, after checking this target may use it."""
        if target.id != WORKER.id:
            raise CallFailed(
                "unknown_target",
                f"target {target.name} uses communication style 'local', which only serves "
                "the appliance's built-in worker",
                hint="give the target an agent (listening or polling)",
            )
        if not self.enabled:
            raise CallFailed(
                "worker_disabled",
                "the built-in worker is disabled on this appliance (setting builtin_worker "
                "is false): it takes no packages",
                hint="enable builtin_worker, or run the step on agent targets",
            )
        if self.root is None or self.cache is None:
            raise RuntimeError("the local transport was not configured")
        await asyncio.to_thread(_prepare_package_dirs, self.root, self.user)
        return self.cache

    def _scratch_dir(self) -> Path:
        assert self.root is not None
        return self.root / "tmp"

    def _hand_over(self, path: Path) -> None:
        """A cached file belongs to the worker user, who runs the runner that reads it."""
        if self.user is not None and os.geteuid() == 0:
            os.chown(path, self.user.uid, self.user.gid)

    # -- files ---------------------------------------------------------------------------

    def _work_dir(self, task_id: str) -> Path:
        assert self.root is not None
        _prepare_root(self.root, shared=self.user is not None)
        _prepare_package_dirs(self.root, self.user)
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


def _prepare_package_dirs(root: Path, user: WorkerUser | None) -> None:
    """``cache/``, ``applications/`` and ``tmp/`` (scratch for uploads and deltas) under the
    worker dir, 0700. With a worker user and an appliance running as root, ``cache/`` and
    ``applications/`` belong to that user (the runner reads the one and extracts into the
    other); ``tmp/`` stays the appliance's."""
    _prepare_root(root, shared=user is not None)
    for name in ("cache", "applications", "tmp"):
        path = root / name
        path.mkdir(mode=0o700, exist_ok=True)
        if user is not None and name != "tmp" and os.geteuid() == 0:
            os.chown(path, user.uid, user.gid)


def _spool(content: UploadSource, directory: Path) -> Path:
    """Copy upload content into a private scratch file in ``directory`` (same file system as
    the cache, so storing it is a rename); the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="octo-local-", suffix=".part", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, _open_source(content) as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _open_source(content: UploadSource) -> BinaryIO:
    if isinstance(content, bytes):
        return io.BytesIO(content)
    if isinstance(content, str | os.PathLike):
        return Path(content).open("rb")
    return content()


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
