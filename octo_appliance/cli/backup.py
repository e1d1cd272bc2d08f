"""``octo-appliance backup --output FILE``: a consistent backup while the server runs.

The file holds the database and the sealed files, never the master key (see
``octo_appliance.backup``); keep the key (``master-key show``) apart from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from octo_appliance.backup.create import make_backup
from octo_appliance.cli.common import add_data_options, data_config


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backup",
        help="write a backup of the database and sealed files (never the master key)",
        description="Write a consistent backup while the server runs: the database (SQLite "
        "backup API or pg_dump) and the data dir's sealed files. The master key is never in "
        "it: back it up apart with 'master-key show'.",
    )
    add_data_options(parser)
    parser.add_argument("--output", required=True, metavar="FILE", help="the file to write")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = data_config(args)
    result = make_backup(config, Path(args.output))
    for entry in result.left_out:
        print(f"left out: {entry}")
    manifest = result.manifest
    print(
        f"backup written: {result.output} ({manifest.database} database at schema version "
        f"{manifest.schema_version}, {result.files} files, {result.bytes} bytes)"
    )
    print(
        f"sealed under master key id {', '.join(manifest.key_ids) or '(nothing sealed yet)'}: "
        "the key is not in the backup; restoring needs it (keep it apart, 'master-key show')"
    )
    return 0
