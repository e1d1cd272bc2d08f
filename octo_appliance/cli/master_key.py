"""``octo-appliance master-key show|rotate``: back up and rotate the vault's master key.

Rotation is an offline operation: a running server keeps sealing with the key it loaded at
start, so ``rotate`` refuses while a server (on any node) holds the data dir or database
(``octo_appliance.db.in_use``). A rotation that is interrupted
(crash, kill, lost database) leaves everything readable; running it again finishes it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import peewee

from octo_appliance.cli.common import DATA_DIR_HELP, add_data_options, data_config
from octo_appliance.config import Config
from octo_appliance.db.connection import SQLITE_FILE_NAME, open_database
from octo_appliance.db.in_use import hold_exclusive
from octo_appliance.db.migrations import current_version, migrate
from octo_appliance.db.rekey import DEFAULT_BATCH_SIZE, refuse_key_from_env, rotate_master_key
from octo_appliance.exceptions import ConfigError, DatabaseError
from octo_appliance.vault.keys import ENV_VAR, find_key_file, open_keyring, read_keyring_file


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("master-key", help="back up or rotate the master key")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = actions.add_parser("show", help="print the master key so you can back it up offline")
    show.add_argument("--data-dir", metavar="D", help=DATA_DIR_HELP)
    show.set_defaults(handler=run_show)

    rotate = actions.add_parser(
        "rotate",
        help="replace the master key and re-seal every secret and file (stop the server first)",
        description="Generate a new master key and re-seal every sealed value and file with it. "
        "Stop the server first. Safe to interrupt: run it again to finish.",
    )
    add_data_options(rotate)
    rotate.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"values re-sealed per database transaction (default {DEFAULT_BATCH_SIZE})",
    )
    rotate.set_defaults(handler=run_rotate)


def _config(args: argparse.Namespace) -> Config:
    config = data_config(args)
    if not config.data_path.is_dir():
        raise ConfigError(
            f"data dir {config.data_path} does not exist",
            hint="pass --data-dir of an initialised appliance "
            "(start 'octo-appliance serve' once to create one)",
        )
    return config


def run_show(args: argparse.Namespace) -> int:
    config = _config(args)
    loaded = open_keyring(config.data_path, config.master_key_file)
    ring = loaded.ring
    source = ENV_VAR if loaded.path is None else str(loaded.path)
    print(f"Master key (id {ring.current.key_id}, from {source}):")
    print(ring.current.to_text())
    for key in ring.previous:
        print(f"Previous key (id {key.key_id}), still needed until the rotation finishes:")
        print(key.to_text())
    if ring.rotating:
        print("A rotation is unfinished: run 'octo-appliance master-key rotate' to finish it.")
    print(
        "Keep it offline (a password manager or a safe), apart from the backups of the data dir "
        "and database: whoever has both can read every secret. Without it, backups are useless."
    )
    return 0


def _open_db(config: Config) -> peewee.Database:
    url = config.database or ""
    if not url or url.startswith("sqlite"):
        path = Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None
        path = path or config.data_path / SQLITE_FILE_NAME
        if not path.is_file():  # opening would create an empty database file
            raise DatabaseError(
                f"no database at {path}",
                hint="pass the --database the server uses (see config.toml or OCTO_DATABASE)",
            )
    db = open_database(config.database, config.data_path)
    if current_version(db) == 0:
        db.close()
        raise DatabaseError(
            "the database holds no appliance schema",
            hint="pass the --database the server uses (see config.toml or OCTO_DATABASE)",
        )
    migrate(db)
    return db


def _print_progress(kind: str, done: int, total: int) -> None:
    # Flushed per line: whoever watches (or kills) the rotation sees exactly how far it got.
    print(f"re-sealed {done}/{total} {kind}", flush=True)


def run_rotate(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    config = _config(args)
    refuse_key_from_env()
    key_path = find_key_file(config.data_path, config.master_key_file)
    before = read_keyring_file(key_path)  # fail before touching the database without a key
    with hold_exclusive(config.data_path, config.database, command="master-key rotate"):
        return _rotate(config, before.rotating, args.batch_size)


def _rotate(config: Config, resuming: bool, batch_size: int) -> int:
    db = _open_db(config)
    try:
        if resuming:
            print("resuming an unfinished rotation", flush=True)
        result = rotate_master_key(
            db,
            config.data_path,
            key_file=config.master_key_file,
            progress=_print_progress,
            batch_size=batch_size,
            shared_dir=config.shared_path,
        )
    except peewee.PeeweeException as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseError(
            f"the database failed during the rotation: {first_line}",
            hint="everything stays readable; fix the database and run 'master-key rotate' "
            "again to finish",
        ) from None
    finally:
        db.close()
    for path in result.files_skipped:
        print(f"left alone (not a sealed file): {_relative(path, config.data_path)}")
    if result.relay_rows_dropped:
        print(
            f"deleted {result.relay_rows_dropped} row(s) of calls between nodes that stopped "
            "nodes left (nothing could use them)"
        )
    print(f"rotated: new key id {result.new_key_id}; back up the new key with master-key show")
    retired = ", ".join(result.retired_key_ids)
    print(f"retired key id {retired}: keep it with the backups made before this rotation")
    return 0


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
