"""``octo-appliance serve``: run the appliance (HTTPS + HTTP/3 on one port) until stopped.

The first start on an empty data dir initialises it (master key outside the data dir, schema,
``admin`` user, certificate) and prints the generated admin password once. Every start prints a
banner on stdout, one ``name: value`` fact per line, ending with ``ready``: scripts and tests
parse it (``tests/serve_process.py``). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import ssl
import sys
from typing import Any

from octo_appliance import __version__
from octo_appliance.appliance import (
    ADMIN_PASSWORD_ENV,
    ADMIN_USERNAME,
    Appliance,
    InitReport,
    ensure_data_dir,
    open_appliance,
)
from octo_appliance.background import start_services
from octo_appliance.backup.upgrade import upgrade_hook
from octo_appliance.certificate import ServerCertificate
from octo_appliance.cli.common import add_data_options
from octo_appliance.comms.admission import HandshakeLimits
from octo_appliance.comms.descriptors import raise_open_file_limit
from octo_appliance.config import Config, load_config
from octo_appliance.db.connection import describe_database
from octo_appliance.db.in_use import hold_for_server
from octo_appliance.db.rekey import remove_rotation_leftovers
from octo_appliance.exceptions import OctoError
from octo_appliance.security.process import make_undumpable
from octo_appliance.setting import parse_host_port
from octo_appliance.vault.keys import ENV_VAR
from octo_appliance.web import memory_report
from octo_appliance.web.app import create_app
from octo_appliance.web.server import (
    Listener,
    bind_listener,
    exit_process,
    install_shutdown_trigger,
    run_server,
    serve,
)

log = logging.getLogger("octo_appliance.serve")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the appliance: HTTPS (HTTP/1.1, HTTP/2) and HTTP/3 on one port"
    )
    add_data_options(parser)
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="HTTPS (tcp) and HTTP/3 (udp) address [0.0.0.0:8443]"
    )
    parser.add_argument(
        "--polling-listen",
        metavar="HOST:PORT",
        help="mutual-TLS listener for polling agents [0.0.0.0:10943]",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="serve this certificate (with --tls-key)")
    parser.add_argument("--tls-key", metavar="PEM", help="unencrypted private key of --tls-cert")
    parser.set_defaults(handler=run)


def configure_logging(level_name: str) -> None:
    """Log to stderr at ``level_name``, one of config.LOG_LEVELS (checked by load_config)."""
    level = logging.getLevelNamesMapping()[level_name.upper()]
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if level > logging.DEBUG:
        # aioquic logs every connection's handshake at INFO: noise on a busy appliance
        logging.getLogger("quic").setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    # before anything reads a secret: a same-user process cannot read our environ or memory
    make_undumpable()
    # no cyclic collection while the start allocates what lives as long as the server (as in
    # cli.main): _serve turns it back on once everything has started
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    config = load_config(
        {
            "data_dir": args.data_dir,
            "database": args.database,
            "listen": args.listen,
            "polling_listen": args.polling_listen,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
        }
    )
    configure_logging(config.log_level)
    before, now = raise_open_file_limit()
    if now != before:
        log.info("raised the open-file limit from %d to %d (the hard limit)", before, now)
    host, port = parse_host_port(config.listen)
    # Bind before initialising: a busy port must not swallow the once-only admin password.
    listener = bind_listener(host, port, http3=config.http3)
    try:
        return _run_bound(config, listener)
    finally:
        listener.close()


def _run_bound(config: Config, listener: Listener) -> int:
    ensure_data_dir(config.data_path)
    # Held until the process ends: 'master-key rotate' and 'restore' refuse meanwhile.
    in_use = hold_for_server(config.data_path, config.database)
    leftovers = remove_rotation_leftovers(config.data_path)
    if leftovers:
        log.warning(
            "removed %d temporary file(s) of an interrupted master-key rotation; run "
            "'master-key rotate' to finish it if 'master-key show' says it is unfinished",
            len(leftovers),
        )
    try:
        return _run_locked(config, listener)
    finally:
        in_use.release()


def _run_locked(config: Config, listener: Listener) -> int:
    appliance, report = open_appliance(config, initialise=True, before_upgrade=upgrade_hook(config))
    try:
        _say(f"Octo Appliance {__version__}")
        _say(f"data dir: {config.data_path}")
        _say(f"database: {describe_database(appliance.db, config.database)}")
        _say_master_key(report)
        _say_first_start(report)
        if report.upgrade_backup is not None:
            _say(
                f"schema upgraded to version {report.migrations[-1]}; "
                f"backup taken before it: {report.upgrade_backup}"
            )
        cert = appliance.server_certificate()
        app = create_app(appliance)
        try:
            first_start = report.admin_password is not None
            run_server(
                _serve(app, appliance, listener, cert, config, first_start),
                handshake_limits(config),
            )
        except ssl.SSLError as exc:
            raise OctoError(
                f"the TLS certificate or key cannot be used: {exc.reason or exc}",
                hint="check tls_cert/tls_key, or delete tls.crt and tls.key in the data dir "
                "to generate new ones",
            ) from None
    finally:
        appliance.close()
    log.info("stopped")
    exit_process(0)  # skips interpreter finalization: see its docstring
    return 0  # pragma: no cover


async def _serve(
    app: Any,
    appliance: Appliance,
    listener: Listener,
    cert: ServerCertificate,
    config: Config,
    first_start: bool,
) -> None:
    memory_report.install()  # OCTO_DEBUG_MEMORY only: docs/performance.md
    trigger = install_shutdown_trigger()
    host = listener.host or "0.0.0.0"
    shown = f"[{host}]" if ":" in host else host
    services = await start_services(appliance, listen_address=f"{shown}:{listener.port}")
    try:
        network = services.network
        _say(f"polling listener: {_shown_host(config.polling_listen)}:{network.polling_port}")
        _say(f"runner: {network.runner.version} sha256 {network.runner.sha256}")
        _say_listening(listener, cert, first_start)
        # what the start made lives as long as the server: frozen out of the collector's
        # generations, no collection ever walks it again (the pattern the gc docs give)
        gc.freeze()
        gc.enable()
        await serve(
            app,
            listener,
            cert,
            grace_seconds=config.shutdown_grace_seconds,
            log_level=config.log_level,
            shutdown_trigger=trigger,
        )
    finally:
        await services.stop()


def handshake_limits(config: Config) -> HandshakeLimits:
    return HandshakeLimits(
        timeout=float(config.handshake_timeout_seconds),
        max_pending=config.max_pending_handshakes,
        max_pending_per_address=config.max_pending_handshakes_per_address,
    )


def _shown_host(address: str) -> str:
    host, _ = parse_host_port(address)
    return f"[{host}]" if ":" in host else host


def _say(line: str) -> None:
    print(line, flush=True)


def _say_master_key(report: InitReport) -> None:
    if report.key_file is None:
        _say(f"master key: from {ENV_VAR}")
        return
    if report.key_moved_from is not None:
        _say(f"master key: moved from {report.key_moved_from} to {report.key_file}")
    _say(f"master key: {report.key_file}" + (" (new)" if report.created_key else ""))
    if report.created_key or report.key_moved_from is not None:
        _say(
            "  back it up now, apart from the data dir and the database "
            "('octo-appliance master-key show' prints it): without it no backup can be "
            "restored, and 'octo-appliance backup' never includes it"
        )


def _say_first_start(report: InitReport) -> None:
    if report.admin_password is None:
        return
    _say(f"first start: created user '{ADMIN_USERNAME}'")
    if report.admin_password_generated:
        _say(f"admin password: {report.admin_password}")
        _say("  (shown only this once: store it now, or sign in and change it)")
    else:
        _say(f"admin password: taken from {ADMIN_PASSWORD_ENV}")


def _say_listening(listener: Listener, cert: ServerCertificate, first_start: bool) -> None:
    """The addresses last, so the final lines of a start are where to go and who to be."""
    signin = " with the admin password above" if first_start else ", made at the first start"
    host = listener.host
    if host in {"", "0.0.0.0", "::"}:
        shown = socket.gethostname() or "localhost"
        _say(f"listening on all addresses ({host or '*'}), port {listener.port}")
    else:
        shown = f"[{host}]" if ":" in host else host
    _say(f"url: https://{shown}:{listener.port}/")
    if listener.udp is not None:
        _say(f"HTTP/3 on udp/{listener.port}")
    else:
        _say("HTTP/3: off (setting http3)")
    kind = "generated, self-signed" if cert.generated else "from tls_cert"
    if cert.created:
        kind += ", new"
    _say(f"certificate: {cert.cert_file} ({kind})")
    _say(f"certificate SHA-256 thumbprint: {cert.thumbprint_sha256_hex}")
    _say(f"portal: https://{shown}:{listener.port}/ (sign in as '{ADMIN_USERNAME}'{signin})")
    _say("ready (stop with SIGTERM or Ctrl+C)")
