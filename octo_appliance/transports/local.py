"""The built-in worker: the ``local`` transport runs the runner on the appliance itself.

Steps that run "on the appliance" (``run_on: appliance``: cloud and PaaS work where no agent
can be installed) go through here. It is the agent's own runner host
(:class:`~octo_appliance.agent.runner_host.RunnerHost`) used in-process: the same runner build
the appliance serves to agents, the same stdin/stdout protocol, the same process-tree
cancellation; each run gets a fresh work dir ``<worker dir>/work/<task id>-<n>`` that is
removed afterwards.

Settings (docs/configuration.md), declared by the transport as the appliance's own and handed
over in its context like any transport's (docs/plugins.md): ``builtin_worker`` (false: every
appliance step fails with a message saying so), ``worker_user`` (the account the runner runs
as; as root it defaults to ``octo-worker``, see :mod:`octo_appliance.transports.worker_account`:
the worker never runs as the appliance's own user, and is disabled with the reason when it
cannot switch),
``worker_dir``.

The worker is a deployment target like any agent, so it has an agent's package layout beside
its work dirs: ``cache/`` (a :class:`~octo_appliance.agent.cache.PackageCache`: packages by
SHA-256, deltas applied locally), ``applications/`` and ``journal.json``, named to the runner
in its document's context exactly as an agent names its own. The package operations
(``has_file``, ``upload``, ``cached_versions``, ``upload_delta``) work on that cache
in-process; ``call`` still refuses everything else (there is no agent to call: the base
class's ``unknown_method``).

The runner's environment is an allow-list (PATH, HOME, LANG, TZ, USER, LOGNAME), never the
appliance's own. Only the worker's own address is served: a target registered with
communication style ``local`` is refused, so creating a target can never be a way to run
code on the appliance. The directory layout: :mod:`octo_appliance.transports.worker_files`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pwd
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from octo_appliance.agent.cache import PackageCache, finish_in_thread
from octo_appliance.agent.interpreter import frozen, python_command
from octo_appliance.agent.runner_host import Command, RunnerHost
from octo_appliance.agent.workdirs import WorkDirs
from octo_appliance.comms import CallFailed, UploadSource
from octo_appliance.plugin_api import (
    PLUGIN_API_VERSION,
    TransportRegistry,
    appliance_setting,
    hookimpl,
)
from octo_appliance.plugin_api.transport_context import TransportContext
from octo_appliance.plugin_api.transports import (
    APPLIANCE_WORKER,
    EventSink,
    RunnerCommand,
    RunnerResult,
    TargetAddress,
    Transport,
    runner_request,
)
from octo_appliance.security.process import can_switch_users
from octo_appliance.transports.worker_account import (
    SYSTEM_PATH,
    WorkerUnavailable,
    WorkerUser,
    check_account,
    resolve_account,
    setpriv_prefix,
    worker_environment,
)
from octo_appliance.transports.worker_files import (
    default_worker_dir,
    hand_over,
    install,
    prepare_package_dirs,
    prepare_root,
    same_file,
    spool,
)

#: the one address this transport serves
WORKER = APPLIANCE_WORKER
log = logging.getLogger("octo_appliance.worker")
BUILTIN_OFF = "the built-in worker is disabled on this appliance (setting builtin_worker is false)"


class WorkerHost(RunnerHost):
    """The agent's runner host, starting the runner as the worker user."""

    def __init__(self, user: WorkerUser | None, home: Path | None = None) -> None:
        super().__init__()
        self.user = user
        self.home = home

    def can_fork(self) -> bool:
        """A fork server is started as the worker user like a runner, except through sudo,
        which closes the control socket it would be handed (and whose runners the
        appliance could not signal)."""
        user = self.user
        return user is None or user.uid == os.geteuid() or os.geteuid() == 0

    def runner_command(self, pyz: Path) -> Command:
        """The argv, environment and extra process options that start the runner."""
        user = self.user
        env = worker_environment(user, self.home)
        if user is None or user.uid == os.geteuid():
            return [*python_command(), str(pyz)], env, {}
        argv = [*worker_python(), str(pyz)]
        if os.geteuid() == 0:
            # uid, gid and no supplementary groups: set in the child before exec, for the
            # fork server too (its runners are forked from it, so they inherit all three)
            options = {"user": user.uid, "group": user.gid, "extra_groups": []}
            return argv, env, options
        if can_switch_users():
            # a service with capabilities (not root): a uid change between two non-root ids
            # keeps them, so setpriv drops every one of them before the runner starts
            return [*setpriv_prefix(user), *argv], env, {}
        return ["sudo", "-n", "-u", user.name, "--", *argv], env, {}


def worker_python() -> list[str]:
    """The interpreter the worker account runs the runner with: the system's ``python3``
    (the appliance's own interpreter may lie where that account cannot read, a virtualenv
    under a home; and the single executable would unpack itself again for every runner);
    without one, the single executable itself, which runs a ``.pyz`` given as its first
    argument (it must then be executable by the worker account)."""
    python = shutil.which("python3", path=SYSTEM_PATH)
    if python is not None:
        return [python, "-I", "-S"]
    if frozen():
        return python_command()
    raise CallFailed(
        "runner_failed",
        "no python3 in /usr/local/bin, /usr/bin or /bin for the worker user",
        hint="install python3 (3.9 or newer) on the appliance",
    )


class LocalTransport(Transport):
    name = "local"
    summary = "The appliance's built-in worker: runs the runner on the appliance itself"

    settings = (
        appliance_setting("builtin_worker"),
        appliance_setting("worker_user"),
        appliance_setting("worker_dir"),
    )

    def __init__(self, context: TransportContext) -> None:
        super().__init__(context)
        self.enabled = True
        #: why the worker is disabled when it is (None: the setting builtin_worker)
        self.disabled_reason: str | None = None
        self.user: WorkerUser | None = None
        self.root: Path | None = None
        self.host = WorkerHost(None)
        self.cache: PackageCache | None = None
        self._runner_lock = asyncio.Lock()

    def configure(
        self,
        *,
        enabled: bool,
        root: Path,
        user: str | None,
        secrets: Mapping[str, Path] | None = None,
        appliance_user_for_tests: bool = False,
    ) -> None:
        """Apply the settings (called once at start). A ``worker_user`` that names no user
        stops the start; no usable account, a worker dir it cannot reach or a secret it
        could read (``secrets``: name -> path) disables the worker, logged with the reason.

        ``appliance_user_for_tests`` runs the runner as the appliance's own user: for the
        engine's in-process tests and ``octo_appliance.testing`` only (a context built with
        ``testing=True``); no setting reaches it."""
        self.enabled = enabled
        self.disabled_reason = None
        self.root = root
        self.user = None
        self.cache = PackageCache(root / "cache")
        if enabled and not appliance_user_for_tests:
            try:
                self.user = resolve_account(user)
                check_account(self.user, root, secrets or {})
            except WorkerUnavailable as exc:
                self.enabled = False
                self.disabled_reason = str(exc)
                self.user = None
                log.warning("%s", exc)
            else:
                log.info("the built-in worker runs scripts as %s in %s", self.user.name, root)
        home = root / "home" if self.user is not None else None
        self.host = WorkerHost(self.user, home)

    async def start(self) -> None:
        """Apply the declared settings from the context (see :meth:`configure`)."""
        ctx = self.context
        worker_dir = ctx.settings["worker_dir"] or default_worker_dir(ctx.data_dir)
        await asyncio.to_thread(
            self.configure,
            enabled=ctx.settings["builtin_worker"],
            root=Path(worker_dir).absolute(),
            user=ctx.settings["worker_user"],
            secrets=ctx.protected_paths,
            appliance_user_for_tests=ctx.testing,
        )

    @property
    def disabled_message(self) -> str:
        return self.disabled_reason or BUILTIN_OFF

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
            "journal_file": str(root / "state" / "journal.json"),
        }

    # -- the interface (a contract call, a file fetch, is refused by the base class) -------

    async def info(self, target: TargetAddress, timeout: float | None = 30.0) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": "built-in worker",
            "enabled": self.enabled,
            "user": self.user_name,
        }
        if not self.enabled:
            info["disabled"] = self.disabled_message
        return info

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
            return _failed(f"steps that run on the appliance cannot run: {self.disabled_message}")
        if self.root is None:
            raise RuntimeError("the local transport was not configured")
        pyz = await self._runner()
        work_dir = await asyncio.to_thread(self._work_dir, command.task_id)
        document, kill_grace = runner_request(command, str(work_dir), self.package_paths)
        if command.plugin is not None:
            bundle = command.plugin
            path = await self._readable(bundle.path, bundle.sha256, f"plugin-{bundle.sha256}.zip")
            document["plugin"] = {**bundle.as_param(), "path": str(path.absolute())}

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
        scratch = await finish_in_thread(spool, content, self._scratch_dir())
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
        spooled = await finish_in_thread(spool, delta, scratch)
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
                f"the built-in worker takes no packages: {self.disabled_message}",
                hint="see the appliance's log and docs/security.md, or run the step on "
                "agent targets",
            )
        if self.root is None or self.cache is None:
            raise RuntimeError("the local transport was not configured")
        await asyncio.to_thread(prepare_package_dirs, self.root, self.user)
        return self.cache

    def _scratch_dir(self) -> Path:
        assert self.root is not None
        return self.root / "tmp"

    def _hand_over(self, path: Path) -> None:
        """A cached file belongs to the worker user, who runs the runner that reads it."""
        if self.user is not None and can_switch_users():
            hand_over(path, self.user)

    # -- files ---------------------------------------------------------------------------

    def _work_dir(self, task_id: str) -> Path:
        assert self.root is not None
        prepare_root(self.root, shared=self.user is not None)
        prepare_package_dirs(self.root, self.user)
        path = WorkDirs(self.root / "work").create(task_id)
        if self.user is not None and os.geteuid() == 0:
            os.chown(path, self.user.uid, self.user.gid)
        elif self.user is not None and can_switch_users():
            # not root: the runner starts in it (its cwd) before setpriv switches to the
            # worker account, so the appliance's group may enter it, and nobody else
            os.chmod(path, 0o710)  # first: once the worker's, only it may change the mode
            os.chown(path, self.user.uid, os.getegid())
        return path

    async def _runner(self) -> Path:
        """The runner build, copied where the worker user can read it."""
        build = self.context.runner
        name = f"octo-runner-{build.version}.pyz"
        return await self._readable(Path(build.path), build.sha256, name)

    async def _readable(self, source: Path, sha256: str, name: str) -> Path:
        """``source`` (the runner, or a plugin command bundle), or with a worker user a copy
        in ``<worker dir>/runners/`` that user can read, checked by SHA-256 before reuse."""
        assert self.root is not None
        if self.user is None:
            return source
        target = self.root / "runners" / name
        async with self._runner_lock:
            if not await asyncio.to_thread(same_file, target, sha256):
                await asyncio.to_thread(install, source, target, self.root)
        return target


def _failed(message: str) -> RunnerResult:
    return RunnerResult(
        exit_code=1, success=False, canceled=False, message=message, output_variables=[], details={}
    )


OCTO_PLUGIN_API = PLUGIN_API_VERSION


@hookimpl
def register_transports(registry: TransportRegistry) -> None:
    registry.add(LocalTransport)


__all__ = [
    "WORKER",
    "LocalTransport",
    "WorkerHost",
    "WorkerUser",
    "default_worker_dir",
    "worker_environment",
]
