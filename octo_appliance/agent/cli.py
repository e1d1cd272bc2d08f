"""``octo-agent``: the agent's command line.

Every command prints what it did; a deliberate failure prints ``octo-agent: error: ...`` and a
hint on stderr and exits 1 (2 for bad usage or settings), never a traceback. The API key is a
secret: prefer ``--api-key-file`` or ``OCTO_API_KEY`` (``--api-key`` on the command line is
visible to every user of the machine in ``ps``); it is never printed or logged.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from octo_runner import PROTOCOL_VERSION as RUNNER_PROTOCOL

from octo_appliance.agent import service, systemd
from octo_appliance.agent.home import WILDCARD_HOSTS, Home, parse_address
from octo_appliance.agent.version import running_version
from octo_appliance.appliance_client.api_key_input import (
    API_KEY_ENV,
    TOKEN_ENV,
    add_api_key_options,
    add_token_options,
    is_registration_token,
    read_credential,
)
from octo_appliance.comms import PROTOCOL_VERSION
from octo_appliance.exceptions import ConfigError, OctoError, exit_status

PROG = "octo-agent"
HOME_ENV = "OCTO_AGENT_HOME"


def default_home() -> str:
    from_env = os.environ.get(HOME_ENV)
    if from_env:
        return from_env
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return "/var/lib/octo-agent"
    return str(Path.home() / ".local" / "share" / "octo-agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Octo agent: runs deployment work on this machine for one Octo appliance.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    new_cert = commands.add_parser("new-certificate", help="create the agent's key pair")
    _home_option(new_cert)
    new_cert.add_argument("--force", action="store_true", help="replace an existing one")
    new_cert.set_defaults(handler=cmd_new_certificate)

    show = commands.add_parser("show-thumbprint", help="print the agent certificate's SHA-256")
    _home_option(show)
    show.set_defaults(handler=cmd_show_thumbprint)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=cmd_version)

    reg = commands.add_parser("register", help="register this agent with an appliance")
    _home_option(reg)
    reg.add_argument("--server", required=True, metavar="URL", help="https://HOST:PORT")
    reg.add_argument(
        "--server-thumbprint",
        required=True,
        metavar="SHA256",
        help="the appliance certificate's SHA-256 thumbprint (from its banner)",
    )
    _api_key_options(reg)
    reg.add_argument(
        "--environment",
        action="append",
        metavar="ENV",
        help="repeatable; needed with an API key (a token's default: all of its environments)",
    )
    reg.add_argument(
        "--role",
        action="append",
        metavar="ROLE",
        help="repeatable; needed with an API key (a token's default: all of its roles)",
    )
    reg.add_argument("--name", help="target name (default: this machine's host name)")
    style = reg.add_mutually_exclusive_group(required=True)
    style.add_argument(
        "--listen", metavar="HOST:PORT", help="listening agent: the appliance dials this"
    )
    style.add_argument(
        "--poll", action="store_true", help="polling agent: dial the appliance and wait there"
    )
    reg.add_argument(
        "--public-host",
        metavar="NAME",
        help="listening: the host the appliance dials (default: the --listen host)",
    )
    reg.add_argument(
        "--polling-address",
        metavar="HOST:PORT[,HOST:PORT...]",
        help="polling: where to dial; the nodes of an appliance of several, comma-separated, "
        "tried in turn (default: what the appliance says)",
    )
    reg.add_argument("--force", action="store_true", help="replace an existing registration")
    reg.set_defaults(handler=cmd_register)

    run = commands.add_parser("run", help="run the agent in the foreground")
    run.add_argument(
        "--home",
        action="append",
        metavar="H",
        help="agent home (default: $OCTO_AGENT_HOME, /var/lib/octo-agent as root, else "
        "~/.local/share/octo-agent); repeat it to host several agents in one process",
    )
    run.add_argument(
        "--homes-file", metavar="F", type=Path, help="a file listing agent homes, one per line"
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        help="default INFO",
    )
    run.add_argument(
        "--supervise",
        action="store_true",
        help="run the agent under its supervisor, which can update it and roll a failed "
        "update back (one home; the service unit uses it)",
    )
    run.set_defaults(handler=cmd_run)

    dereg = commands.add_parser("deregister", help="delete this agent's target on the appliance")
    _home_option(dereg)
    _api_key_options(dereg)
    dereg.set_defaults(handler=cmd_deregister)

    wait = commands.add_parser(
        "wait-healthy", help="wait until the appliance reports this agent's target healthy"
    )
    _home_option(wait)
    _api_key_options(wait)
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    wait.add_argument(
        "--pid", type=int, metavar="PID", help="give up at once when this process (the agent) ends"
    )
    wait.set_defaults(handler=cmd_wait_healthy)

    check = commands.add_parser(
        "verify-manifest", help="check a downloaded build against its signed manifest"
    )
    check.add_argument("--manifest", required=True, type=Path, metavar="F", help="its JSON")
    check.add_argument("--public-key", required=True, metavar="KEY", help="base64 Ed25519")
    check.add_argument("--file", required=True, type=Path, metavar="F", help="the download")
    check.set_defaults(handler=cmd_verify_manifest)

    svc = commands.add_parser("service", help="manage the systemd service")
    svc_commands = svc.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    install = svc_commands.add_parser("install", help="write a systemd unit for this agent")
    _home_option(install)
    install.add_argument("--user", metavar="U", help="run the agent as this user")
    install.add_argument(
        "--unit-dir", type=Path, default=systemd.DEFAULT_UNIT_DIR, help="default %(default)s"
    )
    install.add_argument(
        "--unit-name", default=systemd.DEFAULT_UNIT_NAME, help="default %(default)s"
    )
    install.add_argument("--force", action="store_true", help="overwrite an existing unit")
    install.add_argument(
        "--enable",
        action="store_true",
        help="also run systemctl daemon-reload and enable --now (when systemd runs here)",
    )
    install.set_defaults(handler=cmd_service_install)
    return parser


def _home_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home",
        metavar="H",
        help="agent home (default: $OCTO_AGENT_HOME, /var/lib/octo-agent as root, else "
        "~/.local/share/octo-agent)",
    )


def _api_key_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    add_api_key_options(group)
    add_token_options(group)


def _home(args: argparse.Namespace) -> Home:
    return Home(args.home or default_home())


def api_key(args: argparse.Namespace) -> str:
    """The API key or registration token the command authenticates with (never printed)."""
    return read_credential(
        args,
        missing_hint=f"pass --api-key-file F or --token-file F (or set ${API_KEY_ENV} or "
        f"${TOKEN_ENV}); create a key in the portal",
    )


# -- commands --------------------------------------------------------------------------------


def cmd_new_certificate(args: argparse.Namespace) -> int:
    home = _home(args)
    registered = (config := home.load_config()) is not None and config.is_registered
    identity = home.create_identity(force=args.force)
    print(f"created {home.cert_file}")
    print(f"thumbprint: {identity.thumbprint}")
    if registered:
        print(
            "warning: this agent is registered with the old certificate; register it again "
            "(with --force) so the appliance trusts the new one",
            file=sys.stderr,
        )
    return 0


def cmd_show_thumbprint(args: argparse.Namespace) -> int:
    print(_home(args).load_identity().thumbprint)
    return 0


def cmd_version(_args: argparse.Namespace) -> int:
    print(
        f"{PROG} {running_version()} (comms protocol {PROTOCOL_VERSION}, "
        f"runner protocol {RUNNER_PROTOCOL})"
    )
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    # only register and deregister speak HTTPS: httpx is not loaded by ``run`` (start time)
    from octo_appliance.agent import registration

    home = _home(args)
    if args.poll and args.public_host:
        raise ConfigError("--public-host is for listening agents", hint="drop it with --poll")
    if args.listen and args.polling_address:
        raise ConfigError("--polling-address is for polling agents", hint="drop it with --listen")
    public_host = args.public_host or ""
    if args.listen and not public_host:
        host, _ = parse_address(args.listen, "--listen")
        public_host = "" if host in WILDCARD_HOSTS else host
    request = registration.RegisterRequest(
        name=args.name or socket.gethostname(),
        environments=list(args.environment or []),
        roles=list(args.role or []),
        mode="polling" if args.poll else "listening",
        listen=args.listen or "",
        public_host=public_host,
        polling_address=args.polling_address or "",
    )
    registration.check_request(request)
    key = api_key(args)
    if not is_registration_token(key) and not (request.environments and request.roles):
        raise ConfigError(
            "registering with an API key needs --environment and --role",
            hint="name at least one of each (a registration token brings its own)",
        )
    server = registration.pin_server(args.server, args.server_thumbprint)
    config = registration.register(home, server, key, request, force=args.force)
    print(f"registered {config.name!r} as target {config.target_id} with {config.server_url}")
    if config.mode == "listening":
        print(f"listening on {config.listen}; the appliance dials {request.uri()}")
    else:
        print(f"polling the appliance at {config.polling_address}")
    print(f"agent thumbprint: {home.load_identity().thumbprint}")
    print(f"appliance thumbprint (pinned): {config.comms_thumbprint}")
    print(f"next: {PROG} run --home {home.root}   (or: {PROG} service install --home {home.root})")
    return 0


def cmd_deregister(args: argparse.Namespace) -> int:
    from octo_appliance.agent import registration

    home = _home(args)
    key = api_key(args)
    config, known = registration.deregister(home, key)
    if known:
        print(f"deleted target {config.target_id} ({config.name!r}) on {config.server_url}")
    else:
        print(f"{config.server_url} no longer knew target {config.target_id}")
    print(f"removed the registration from {home.config_file} (the certificate is kept)")
    return 0


def cmd_wait_healthy(args: argparse.Namespace) -> int:
    """Exit 0 once the appliance reports Healthy (or with warnings), 1 when it reports
    Unhealthy/Unavailable after its check or the timeout passes first."""
    home = _home(args)
    from octo_appliance.agent import registration  # httpx only for the commands that call

    pid = args.pid
    alive = None if pid is None else (lambda: _process_exists(pid))
    status = registration.wait_healthy(home, api_key(args), timeout=args.timeout, alive=alive)
    print(f"the appliance reports this target {status}")
    return 0


def cmd_verify_manifest(args: argparse.Namespace) -> int:
    from octo_appliance.agent.verify import verify_download

    manifest = verify_download(args.manifest, args.public_key, args.file)
    print(
        f"verified {manifest.component} {manifest.version} ({manifest.platform}, {manifest.sha256})"
    )
    return 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


def cmd_run(args: argparse.Namespace) -> int:
    homes = [Home(h) for h in args.home or []]
    if args.homes_file is not None:
        homes += [Home(h) for h in _read_homes_file(args.homes_file)]
    if not homes:
        homes = [Home(default_home())]
    if args.supervise:
        if len(homes) != 1:
            raise ConfigError(
                "--supervise runs one agent home", hint="give one --home with --supervise"
            )
        from octo_appliance.agent import supervisor

        return supervisor.supervise(homes[0], ["--log-level", args.log_level])
    return service.run(homes, log_level=args.log_level)


def _read_homes_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"cannot read --homes-file {path}: {exc.strerror}", hint="check the path"
        ) from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def cmd_service_install(args: argparse.Namespace) -> int:
    lines = systemd.install(
        _home(args),
        unit_dir=args.unit_dir,
        unit_name=args.unit_name,
        user=args.user,
        force=args.force,
        enable=args.enable,
    )
    print("\n".join(lines))
    return 0


def report_error(exc: OctoError) -> None:
    print(f"{PROG}: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"{PROG}: hint: {exc.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return exit_status(lambda: args.handler(args), report_error)


if __name__ == "__main__":
    sys.exit(main())
