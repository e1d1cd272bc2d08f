"""The appliance's background services, started with the server and stopped with it.

- the removal of partial package uploads a crash left behind;
- the runner build the appliance serves to agents;
- the agent network: the polling listener, listening-agent connections, agent trust;
- the transports, each built with its context and declared settings (the built-in worker,
  the ``local`` transport, like any other) and started;
- agent self-updates (engine/agent_updates.py), observing every agent connection;
- the task engine with its task kinds (script console, health checks, deployments) and
  package acquisition from the feed;
- the health-check schedule.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from octo_appliance import __version__
from octo_appliance.agent import contract
from octo_appliance.appliance import Appliance
from octo_appliance.builds.agent import (
    LINUX_X86_64,
    AgentBuild,
    BuildError,
    find_cached,
    frozen,
)
from octo_appliance.builds.manifest import sign
from octo_appliance.builds.runner import RunnerBuild
from octo_appliance.comms import CommsSettings, load_identity
from octo_appliance.config import Config
from octo_appliance.db import Target
from octo_appliance.engine import console, deployments, health
from octo_appliance.engine.acquisition import Acquirer
from octo_appliance.engine.agent_updates import AgentUpdates, UpdatePolicy
from octo_appliance.engine.dispatch import Dispatcher
from octo_appliance.engine.targets import trusted_agents
from octo_appliance.engine.tasks import TaskEngine, TaskKindRegistry
from octo_appliance.exceptions import OctoError
from octo_appliance.feed.sealed_files import STALE_INCOMING_SECONDS, incoming_dir, sweep_incoming
from octo_appliance.nodes.registry import NodeInfo
from octo_appliance.nodes.service import NodeService
from octo_appliance.plugin_api import APPLIANCE_WORKER, Transport, TransportContext
from octo_appliance.plugin_api.settings import resolve_settings
from octo_appliance.plugin_loading.bundles import BundleStore, plugin_bundles_dir
from octo_appliance.setting import parse_host_port
from octo_appliance.transports.agent_build import OfferedBuild, declared_version
from octo_appliance.transports.network import AgentNetwork, spool_dir
from octo_appliance.transports.relay import CallRelay, RelayingHub
from octo_appliance.vault.keys import key_file_path, key_from_env

MIB = 1024 * 1024
log = logging.getLogger("octo_appliance.background")


@dataclass
class Services:
    network: AgentNetwork
    tasks: TaskEngine
    health: health.HealthScheduler
    dispatcher: Dispatcher
    updates: AgentUpdates
    node: NodeService
    #: seconds running tasks may finish on stop (setting stop_grace_seconds)
    stop_grace: float = 0.0
    #: calls across nodes (PostgreSQL only; docs/ha.md)
    relay: CallRelay | None = None

    async def stop(self) -> None:
        """In order: no new tasks (claimed ones not started go back to the queue), running
        ones finish within the grace or are stopped, this node leaves the node list, then what
        the transports hold (the built-in worker's fork server), then the agent connections."""
        await self.updates.stop()
        await self.health.stop()
        await self.tasks.stop(finish_within=self.stop_grace)
        await self.node.stop("stopped (SIGTERM)")
        await self.dispatcher.close()
        if self.relay is not None:
            await self.relay.stop()
        await self.network.stop()


def agent_target_ids() -> list[str]:
    """The targets a health check visits: every enabled one reached by a transport (agents,
    SSH and any plugin's), not the built-in worker on the appliance itself."""
    rows = Target.select(Target.id).where(
        Target.disabled == False,  # noqa: E712
        Target.communication_style != APPLIANCE_WORKER.communication_style,
    )
    return [t.id for t in rows]


def appliance_secrets(appliance: Appliance, tls_key: Path) -> dict[str, Path]:
    """What the built-in worker's account must not be able to read (checked at start)."""
    secrets = {"data dir": appliance.data_dir.absolute(), "TLS key": tls_key.absolute()}
    if not key_from_env():
        key = key_file_path(appliance.config.master_key_file)
        secrets["master key"] = key.absolute()
    return secrets


def build_transports(
    appliance: Appliance,
    network: AgentNetwork,
    runner: RunnerBuild,
    protected: dict[str, Path],
    testing: bool = False,
) -> dict[str, Transport]:
    """Every registered transport, built with its context: its declared settings read and
    checked, the agent network for agent transports only (docs/plugins.md)."""
    built: dict[str, Transport] = {}
    for entry in appliance.plugins.transports:
        context = TransportContext(
            entry.name,
            runner,
            resolve_settings(entry.name, entry.cls.settings, appliance.config, os.environ),
            data_dir=appliance.data_dir,
            sealing=appliance.vault,
            protected_paths=protected,
            testing=testing,
            agent_network=network if entry.cls.agent_transport else None,
        )
        built[entry.name] = entry.cls(context)
    return built


def offered_agent_build(appliance: Appliance) -> OfferedBuild | None:
    """The agent build agents update to, signed with the appliance's key: ``agent_build_file``
    if set, else the build ``GET /api/v1/agent`` serves when one is ready (a development
    install that has not built one yet offers none: nothing is built for this)."""
    build: AgentBuild | None
    if appliance.config.agent_build_file:
        path = Path(appliance.config.agent_build_file).absolute()
        version = declared_version(path)
        digest = hashlib.sha256()
        with path.open("rb") as file:
            while chunk := file.read(MIB):
                digest.update(chunk)
        build = AgentBuild(version, LINUX_X86_64, path, path.stat().st_size, digest.hexdigest())
    elif frozen():
        try:
            build = appliance.agent_builds.get(LINUX_X86_64)
        except BuildError as exc:
            log.warning("agents will not be updated: %s", exc.message)
            return None
    else:
        build = find_cached(appliance.agent_builds.cache_dir)
    if build is None:
        return None
    manifest = sign(appliance.signing_key(), **build.info())
    return OfferedBuild(build.path, manifest.to_json())


async def start_services(
    appliance: Appliance, *, testing: bool = False, listen_address: str = ""
) -> Services:
    """Start everything that runs beside the server. ``testing`` (``octo_appliance.testing``
    only): transports are told so in their context (the built-in worker then runs as the
    test's own user). ``listen_address``: the HTTPS ``host:port`` bound (the node list)."""
    config = appliance.config
    # no upload runs here yet: what is in the feed's .incoming was left by a crash (in a
    # shared dir only old leftovers: another node may be receiving one now)
    shared = appliance.files_root != appliance.data_dir
    removed = await asyncio.to_thread(
        sweep_incoming, appliance.files_root, STALE_INCOMING_SECONDS if shared else 0
    )
    if removed:
        log.info(
            "removed %d partial upload(s) from %s", removed, incoming_dir(appliance.files_root)
        )
    runner = await asyncio.to_thread(appliance.runner_build)
    cert = await asyncio.to_thread(appliance.server_certificate)
    identity = load_identity(cert.cert_file, cert.key_file, cert.key_password)
    bundles = BundleStore(plugin_bundles_dir(appliance.data_dir))
    network = AgentNetwork(
        identity,
        runner,
        trusted_agents,
        settings=CommsSettings(
            spool_dir=spool_dir(appliance.data_dir),
            handshake_timeout=float(config.handshake_timeout_seconds),
            max_pending_handshakes=config.max_pending_handshakes,
            max_pending_handshakes_per_address=config.max_pending_handshakes_per_address,
        ),
        pickup_timeout=config.pickup_timeout_seconds,
        bundles=bundles,
        agent_build=await asyncio.to_thread(offered_agent_build, appliance),
        update_wait=float(config.agent_update_wait_seconds),
    )
    relay = await start_relay(appliance, network, bundles) if is_postgres(appliance.db) else None
    # settings are read and checked before anything listens: a bad one stops the start clean
    dispatcher = Dispatcher(
        build_transports(
            appliance, network, runner, appliance_secrets(appliance, cert.key_file), testing
        )
    )
    updates = AgentUpdates(
        network,
        UpdatePolicy(
            mode=config.agent_updates,
            cap=config.agent_update_cap,
            confirm_seconds=float(config.agent_update_confirm_seconds),
        ),
    )
    updates.start()
    appliance.agent_updates = updates
    host, port = parse_host_port(config.polling_listen)
    try:
        await network.start(host, port)
    except OSError as exc:
        raise OctoError(
            f"cannot listen for polling agents on {config.polling_listen}: {exc.strerror or exc}",
            hint="free the port, or choose another with --polling-listen HOST:PORT",
        ) from None
    loop = asyncio.get_running_loop()
    appliance.agent_network = network
    appliance.target_listeners.append(lambda: network.reload_trust_soon(loop))

    try:
        for transport in dispatcher.transports.values():
            await transport.start()
    except BaseException:
        await dispatcher.close()
        await network.stop()
        raise
    kinds = TaskKindRegistry()
    kinds.register(console.KIND, console.make_script_handler(dispatcher))
    kinds.register(health.KIND, health.make_health_handler(dispatcher))
    deployment_services = deployments.DeploymentServices(
        dispatcher,
        appliance.plugins.step_types,
        appliance.vault,
        step_parallelism=config.step_parallelism,
        acquirer=Acquirer(
            dispatcher.transport_for,
            appliance.feed,
            parallelism=config.package_parallelism,
            delta_max_bytes=config.delta_max_mb * MIB,
            spool_dir=spool_dir(appliance.data_dir),
        ),
        bundles=bundles,
    )
    kinds.register(deployments.KIND, deployments.make_deployment_handler(deployment_services))
    node = NodeService(
        appliance.db,
        appliance.vault,
        node_info(appliance, network.polling_port, listen_address),
        dead_after=float(config.node_dead_after_seconds),
        heartbeat=float(config.node_heartbeat_seconds),
    )
    try:
        await node.register()  # a refused start stops here, before any task is touched
    except BaseException:
        await dispatcher.close()
        if relay is not None:
            await relay.stop()
        await network.stop()
        raise
    appliance.node = node
    engine = TaskEngine(
        appliance.db,
        appliance.vault,
        node.name,
        task_cap=config.task_cap,
        kinds=kinds,
        task_log_max_lines=config.task_log_max_lines,
        lease=node.lease,
    )
    await engine.start()
    node.start(engine)
    deployment_services.enqueue = engine.enqueue
    # deployments whose task failed at this start (the appliance died under it) or ended
    # while queued take their task's state; their pending interruptions are closed
    await asyncio.to_thread(deployments.reconcile)
    appliance.task_engine = engine

    def enqueue_all() -> str | None:
        ids = agent_target_ids()
        if not ids:
            return None
        return engine.enqueue(health.KIND, "Scheduled health check", {"target_ids": ids})

    scheduler = health.HealthScheduler(config.health_check_minutes * 60, enqueue_all)
    scheduler.start()
    return Services(
        network,
        engine,
        scheduler,
        dispatcher,
        updates,
        node,
        float(config.stop_grace_seconds),
        relay,
    )


def node_name(config: Config) -> str:
    return config.node_name or socket.gethostname() or "appliance"


def node_info(appliance: Appliance, polling_port: int, listen_address: str = "") -> NodeInfo:
    """What this node registers: its name, addresses, version, cap, key id and plugins."""
    config = appliance.config
    host, _ = parse_host_port(config.polling_listen)
    loaded = [r for r in appliance.plugins.describe() if r["state"] == "loaded"]
    return NodeInfo(
        name=node_name(config),
        address=config.node_address or listen_address or config.listen,
        polling_address=f"{host}:{polling_port}",
        version=__version__,
        task_cap=config.task_cap,
        key_id=appliance.vault.current_key_id,
        plugins=[f"{r['name']} {r['version']}".strip() for r in loaded],
    )


def is_postgres(db: object) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


async def start_relay(
    appliance: Appliance, network: AgentNetwork, bundles: BundleStore
) -> CallRelay:
    """Several nodes on one PostgreSQL: calls for agents connected to another node go there
    (docs/ha.md, "Calls across nodes"). Started before the polling listener, so every agent
    connection is recorded."""
    hub = RelayingHub()
    network.hub = hub
    label = f"{node_name(appliance.config)} (polling {appliance.config.polling_listen})"
    relay = CallRelay(
        str(appliance.config.database),
        appliance.vault,
        label,
        spool_dir(appliance.data_dir),
        hub.local_call,
    )
    relay.on_targets_changed = network.reload_trust

    async def prepare(method: str, params: dict[str, Any]) -> None:
        """A relayed ``runner.run`` of a plugin step: the agent fetches the bundle from this
        node, which builds it from its own copy of the plugin (bundles are reproducible:
        the same plugin gives the same SHA-256 on every node)."""
        plugin = params.get("plugin")
        if method != contract.RUNNER_RUN or not isinstance(plugin, dict):
            return
        name, sha256 = str(plugin.get("name", "")), str(plugin.get("sha256", ""))
        step_type = appliance.plugins.step_types.get(name)
        code = step_type.target_code if step_type is not None else None
        if bundles.get(sha256) is None and code is not None:
            await asyncio.to_thread(bundles.bundle_for, name, code)

    relay.prepare = prepare
    await relay.start()
    hub.relay = relay
    appliance.target_listeners.append(relay.targets_changed)
    appliance.call_relay = relay
    return relay
