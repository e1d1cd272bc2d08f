"""``octo-appliance restore --input FILE``: read a backup back into an empty data dir/database.

The master key the backup was sealed with must be where the appliance will find it (the key
file, or ``OCTO_MASTER_KEY``) before the restore writes anything; see ``octo_appliance.backup``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.backup.restore import restore_backup
from octo_appliance.cli.common import add_data_options, data_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore a backup into an empty data dir and database (the server stopped)",
        description="Restore a file written by 'octo-appliance backup' into an empty data dir "
        "(and an empty PostgreSQL database with --database). The master key the backup was "
        "sealed with must be in the key file or OCTO_MASTER_KEY first.",
    )
    add_data_options(parser)
    parser.add_argument("--input", required=True, metavar="FILE", help="the backup file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = data_config(args)
    result = restore_backup(config, Path(args.input))
    manifest = result.manifest
    print(
        f"restored {args.input} (made {manifest.created} by octo-appliance "
        f"{manifest.appliance_version}): {manifest.database} database, {result.files} files, "
        f"into {config.data_path}"
    )
    print(f"start the server with the same master key (from {result.key_source})")
    return 0
