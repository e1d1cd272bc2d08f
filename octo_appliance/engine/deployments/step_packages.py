"""One deployment step's package transfers: each package placed on each target once.

A step may send a package to all its targets at once and go on (``acquire_package(wait=False)``,
docs/plugins.md): each target's run then waits for its own transfer only, and a target whose
transfer failed or was never started gets it sent again on its own. Every transfer is recorded
in the deployment's progress (mode, bytes sent, base version of a delta).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from octo_appliance.engine.acquisition import Acquirer, Transfer
from octo_appliance.engine.deployments.plan import TargetInfo
from octo_appliance.engine.deployments.run import DeploymentRun
from octo_appliance.engine.tasks import TargetRef
from octo_appliance.steps.base import PackageInfo, PackageTransfer, StepFailed, StepTarget
from octo_appliance.transports.base import TargetAddress


class StepPackages:
    """The package transfers of the step at ``index`` of ``run``."""

    def __init__(self, run: DeploymentRun, index: int) -> None:
        self.run = run
        self.index = index
        #: (target id, package sha256) whose transfer succeeded in this step
        self._placed: set[tuple[str, str]] = set()
        #: transfers started by ``acquire(wait=False)``, until a run of that target takes its own
        self._inflight: dict[tuple[str, str], asyncio.Future[PackageTransfer]] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def acquire(
        self, package: PackageInfo, infos: Sequence[TargetInfo], *, wait: bool = True
    ) -> list[PackageTransfer]:
        """Send ``package`` to the targets of ``infos``: its transfers, or at once ``[]``
        with the transfers going on in the background (``wait=False``)."""
        if wait:
            return await self._acquire(package, infos)
        self._acquirer()  # no feed: the step fails now, not once per target
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[PackageTransfer]] = {}
        for info in infos:
            futures[info.id] = self._inflight[(info.id, package.sha256)] = loop.create_future()

        def placed(result: PackageTransfer) -> None:
            future = futures.get(result.target.id)
            if future is not None and not future.done():
                future.set_result(result)

        async def in_background() -> None:
            try:
                await self._acquire(package, infos, placed)
            except Exception as exc:  # the runs of those targets try again on their own
                for info in infos:
                    placed(PackageTransfer(step_target(info), "failed", 0, str(exc)))
            finally:
                for future in futures.values():
                    future.cancel()  # only those never answered (a cancelled step)

        work = loop.create_task(in_background())
        self._background.add(work)
        work.add_done_callback(self._background.discard)
        return []

    async def place(self, package: PackageInfo, info: TargetInfo) -> str | None:
        """Make sure ``package`` is on ``info``'s target before a run there: wait for its
        transfer in the background if there is one, else send it now. None once it is
        there, else why it is not."""
        key = (info.id, package.sha256)
        if key not in self._placed:
            pending = self._inflight.pop(key, None)
            if pending is not None:  # sent with the others: wait for this target's only
                await asyncio.wait([pending])
        if key in self._placed:
            return None
        transfers = await self._acquire(package, [info])
        if not transfers or not transfers[0].ok:
            why = transfers[0].message if transfers else "no transfer was made"
            return f"package {package.package_id} {package.version} was not sent: {why}"
        return None

    async def close(self) -> None:
        """Stop transfers nobody will wait for any more (the step ended or was cancelled)."""
        for work in list(self._background):
            work.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._inflight.clear()

    def _acquirer(self) -> Acquirer:
        acquirer = self.run.services.acquirer
        if acquirer is None:
            raise StepFailed(
                "this appliance has no package feed to send packages from",
                hint="the step needs the built-in feed; check the appliance's start-up log",
            )
        return acquirer

    async def _acquire(
        self,
        package: PackageInfo,
        infos: Sequence[TargetInfo],
        on_placed: Callable[[PackageTransfer], None] | None = None,
    ) -> list[PackageTransfer]:
        acquirer = self._acquirer()
        by_id = {info.id: info for info in infos}
        addresses = [info.address for info in infos if info.address is not None]
        task = self.run.task

        def log(level: str, message: str, address: TargetAddress | None) -> None:
            ref = None if address is None else TargetRef(address.id, address.name)
            task.log(level, message, ref)

        def record(transfer: Transfer) -> PackageTransfer:
            info = by_id[transfer.target_id]
            result = PackageTransfer(
                step_target(info), transfer.mode, transfer.bytes_sent, transfer.message
            )
            if result.ok:
                self._placed.add((info.id, package.sha256))
            self.run.progress.target_package(
                self.index,
                info.id,
                info.name,
                {
                    "package_id": package.package_id,
                    "version": package.version,
                    "mode": transfer.mode,
                    "bytes_sent": transfer.bytes_sent,
                    "base_version": transfer.base_version,
                    "message": transfer.message,
                },
            )
            if on_placed is not None:
                on_placed(result)
            return result

        recorded: dict[str, PackageTransfer] = {}

        def each(transfer: Transfer) -> None:  # the acquirer calls it for every target
            recorded[transfer.target_id] = record(transfer)

        transfers = await acquirer.acquire(package, addresses, log, each)
        return [recorded[target_id] for target_id in transfers]


def step_target(info: TargetInfo) -> StepTarget:
    return StepTarget(info.id, info.name, tuple(sorted(info.roles)))
