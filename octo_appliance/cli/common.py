"""Options several commands share (``--data-dir``, ``--database``) and opening the appliance."""

from __future__ import annotations

import argparse

from octo_appliance.appliance import Appliance, open_appliance
from octo_appliance.backup.upgrade import upgrade_hook
from octo_appliance.config import Config, load_config

#: the defaults ``config.resolve_data_dir`` uses (tests/unit/test_docs.py keeps them equal)
DATA_DIR_HELP = (
    "data directory (default: $OCTO_DATA_DIR, /var/lib/octo-appliance as root, "
    "else ~/.local/share/octo-appliance)"
)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="D", help=DATA_DIR_HELP)
    parser.add_argument(
        "--database",
        metavar="URL",
        help="database URL (default: SQLite in the data dir; or postgresql://USER@HOST:PORT/DB)",
    )


def data_config(args: argparse.Namespace) -> Config:
    """The settings, with the data dir and database of :func:`add_data_options`."""
    return load_config({"data_dir": args.data_dir, "database": getattr(args, "database", None)})


def open_existing(args: argparse.Namespace) -> Appliance:
    """Open an initialised appliance (for commands run beside a server)."""
    config = data_config(args)
    appliance, _ = open_appliance(config, initialise=False, before_upgrade=upgrade_hook(config))
    return appliance
