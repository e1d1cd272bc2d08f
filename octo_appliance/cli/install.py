"""``octo-appliance install [--uninstall [--purge]]``: the appliance as a system service.

See :mod:`octo_appliance.install.installer` for what it does and why; this module only reads
the options and prints what was done.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.exceptions import ConfigError
from octo_appliance.install.installer import InstallOptions, install, uninstall


def register(subparsers: Any) -> None:
    defaults = InstallOptions()
    parser = subparsers.add_parser(
        "install",
        help="install the appliance as a system service (as root; --uninstall to remove it)",
        description="As root: create the service account (and octo-worker for the built-in "
        "worker), the data dir and the master key's dir (owned by the service account, 0700), "
        "initialise them (the admin password is printed once), write a hardened systemd unit "
        "and, when systemd runs this machine, enable and start it. Safe to rerun. Upgrade: "
        "replace the executable and restart; a backup is taken before a schema migration.",
    )
    parser.add_argument("--data-dir", type=Path, default=defaults.data_dir, metavar="D")
    parser.add_argument(
        "--key-dir",
        type=Path,
        default=defaults.key_dir,
        metavar="D",
        help=f"where master.key is kept (default {defaults.key_dir})",
    )
    parser.add_argument("--user", default=defaults.user, help="the service account")
    parser.add_argument(
        "--bin",
        dest="bin_path",
        type=Path,
        default=defaults.bin_path,
        metavar="PATH",
        help="where the single executable is copied (default %(default)s)",
    )
    parser.add_argument(
        "--systemd-dir", type=Path, default=defaults.systemd_dir, metavar="D", help="unit dir"
    )
    parser.add_argument(
        "--no-start", action="store_true", help="write everything but do not start the service"
    )
    parser.add_argument(
        "--uninstall", action="store_true", help="stop and remove the service (keeps the data)"
    )
    parser.add_argument(
        "--purge",
        action="store_true",
        help="with --uninstall: delete the data dir, the master key and the accounts too",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    options = InstallOptions(
        data_dir=args.data_dir.absolute(),
        key_dir=args.key_dir.absolute(),
        user=args.user,
        systemd_dir=args.systemd_dir,
        bin_path=args.bin_path,
        start=not args.no_start,
    )
    if args.purge and not args.uninstall:
        raise ConfigError(
            "--purge deletes the data and goes with --uninstall only",
            hint="octo-appliance install --uninstall --purge",
        )
    if args.uninstall:
        uninstall(options, purge=args.purge, say=print)
    else:
        install(options, say=print)
    return 0
