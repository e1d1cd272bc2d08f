"""``octo-appliance restore``: read a backup back into an empty data dir and database.

Everything is checked before anything is written: the file is a backup (only the entries
``archive`` writes), the master key this appliance will start with opens what the backup was
sealed under (by key id, and the TLS key by trying), the data dir holds nothing but its
settings, a separate ``shared_dir`` none of the shared files, the database is empty. Then the
files go to a staging directory inside the data dir (and one inside ``shared_dir``), the
database is restored (SQLite: a file renamed into place; PostgreSQL: ``pg_restore`` in one
transaction), and the staged files are renamed into place. A failure before the end leaves the
data dir and database as they were. It holds the exclusive in-use lock: no server meanwhile.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from octo_appliance.appliance import ensure_data_dir
from octo_appliance.backup import database
from octo_appliance.backup.archive import (
    DATA_PREFIX,
    MANIFEST_MEMBER,
    SHARED_ENTRIES,
    SHARED_PREFIX,
    Manifest,
    check_member,
    not_a_backup,
    restore_root,
)
from octo_appliance.certificate import KEY_FILE_NAME as TLS_KEY_FILE_NAME
from octo_appliance.certificate import key_password, split_key_file
from octo_appliance.config import CONFIG_FILE_NAME, Config
from octo_appliance.db.in_use import LOCK_FILE_NAME, hold_exclusive
from octo_appliance.db.migrations import latest_version
from octo_appliance.exceptions import ConfigError, DatabaseError, VaultError
from octo_appliance.filesystem.durable import fsync_dir
from octo_appliance.vault.keys import ENV_VAR, KeyRing, key_file_path, open_keyring

STAGING_NAME = ".restoring"
_COPY_BYTES = 1024 * 1024


@dataclass
class RestoreResult:
    manifest: Manifest
    files: int
    key_source: str


def restore_backup(config: Config, source: Path) -> RestoreResult:
    data_dir = config.data_path
    try:
        archive = tarfile.open(source, mode="r:")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise ConfigError(f"no file {source}", hint="pass --input FILE of a backup") from None
    except (tarfile.TarError, OSError) as exc:
        raise not_a_backup(str(source), str(exc) or type(exc).__name__) from None
    with archive:
        manifest, members = _read_index(archive, str(source))
        _check_database_kind(manifest, config)
        ring, key_source = _key_for(manifest, config)
        _check_tls_key(archive, members, ring, key_source)
        ensure_data_dir(data_dir)
        with hold_exclusive(data_dir, config.database, command="restore"):
            _check_empty(config)
            files = _restore(archive, members, manifest, config)
    return RestoreResult(manifest, files, key_source)


# -- checks, before anything is written ----------------------------------------------------------


def _database_member(manifest: Manifest) -> str:
    return database.POSTGRES_MEMBER if manifest.database == "postgresql" else database.SQLITE_MEMBER


def _read_index(archive: tarfile.TarFile, source: str) -> tuple[Manifest, list[tarfile.TarInfo]]:
    try:
        members = archive.getmembers()
    except tarfile.TarError as exc:
        raise not_a_backup(source, str(exc)) from None
    if not members or members[0].name != MANIFEST_MEMBER or not members[0].isfile():
        raise not_a_backup(source, "it does not start with a manifest")
    manifest = Manifest.from_bytes(_read_member(archive, members[0]), source)
    database_member = _database_member(manifest)
    names = set()
    for member in members:
        check_member(member, source, database_member)
        if member.name in names:
            raise not_a_backup(source, f"entry {member.name!r} appears twice")
        names.add(member.name)
    if database_member not in names:
        raise not_a_backup(source, "it holds no database")
    if any(
        name.startswith(f"{DATA_PREFIX}/") and f"{SHARED_PREFIX}/{name.partition('/')[2]}" in names
        for name in names
    ):
        raise not_a_backup(source, "it holds the same file under data/ and shared/")
    if manifest.schema_version > latest_version():
        raise DatabaseError(
            f"the backup is at schema version {manifest.schema_version}, newer than this "
            f"appliance knows ({latest_version()})",
            hint=f"restore it with octo-appliance {manifest.appliance_version} or newer",
        )
    return manifest, members


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None  # a regular file (checked)
    with handle:
        return handle.read()


def _check_database_kind(manifest: Manifest, config: Config) -> None:
    wanted = "postgresql" if database.is_postgres(config.database) else "sqlite"
    if manifest.database != wanted:
        how = (
            "without --database (SQLite)"
            if manifest.database == "sqlite"
            else ("with --database postgresql://USER@HOST:PORT/DB (an empty database)")
        )
        raise ConfigError(
            f"the backup holds a {manifest.database} database and this appliance uses {wanted}",
            hint=f"restore it {how}",
        )


def _key_for(manifest: Manifest, config: Config) -> tuple[KeyRing, str]:
    """The ring the appliance will start with; it must open everything the backup holds."""
    needed = ", ".join(manifest.key_ids) or "unknown"
    path = key_file_path(config.master_key_file)
    try:
        loaded = open_keyring(config.data_path, config.master_key_file)
    except VaultError as exc:
        if not exc.message.startswith("no master key at"):
            raise
        raise VaultError(
            f"restore needs the master key the backup was sealed with (key id {needed}) and "
            f"there is none at {path}",
            hint=f"put that key in {path} (mode 0600: the text 'master-key show' printed, or "
            f"your copy of the key file), or set {ENV_VAR}, then run restore again",
        ) from None
    source = ENV_VAR if loaded.path is None else str(loaded.path)
    have = {key.key_id for key in loaded.ring.keys}
    missing = [key_id for key_id in manifest.key_ids if key_id not in have]
    if missing:
        raise VaultError(
            f"the master key from {source} (key id {', '.join(sorted(have))}) is not the one "
            f"the backup was sealed with (key id {', '.join(missing)})",
            hint="use the key that was current when the backup was made (after a rotation: the "
            "retired key, whose id the rotation printed), then run restore again",
        )
    return loaded.ring, source


def _check_tls_key(
    archive: tarfile.TarFile, members: list[tarfile.TarInfo], ring: KeyRing, source: str
) -> None:
    """The generated TLS key opens with the ring (the one check when nothing else is sealed)."""
    names = {f"{prefix}/{TLS_KEY_FILE_NAME}" for prefix in (DATA_PREFIX, SHARED_PREFIX)}
    member = next((m for m in members if m.name in names), None)
    if member is None:
        return
    data, _ = split_key_file(_read_member(archive, member))
    for key in ring.keys:
        try:
            load_pem_private_key(data, password=key_password(key).encode())
            return
        except (ValueError, TypeError):
            continue
    raise VaultError(
        f"the master key from {source} does not open the backup's TLS key: it is not the key "
        "the backup was made with",
        hint="use the key that was current when the backup was made, then run restore again",
    )


def _check_empty(config: Config) -> None:
    data_dir = config.data_path
    keep = {CONFIG_FILE_NAME, LOCK_FILE_NAME}
    key_file = key_file_path(config.master_key_file)
    present = sorted(
        entry.name
        for entry in data_dir.iterdir()
        if entry.name not in keep and entry.resolve() != key_file.resolve()
    )
    if present:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ConfigError(
            f"the data dir {data_dir} is not empty (it holds {shown})",
            hint="restore into a new, empty data dir (move this one aside): restore never "
            "overwrites",
        )
    shared = config.shared_path
    taken = [entry for entry in SHARED_ENTRIES if (shared / entry).exists()]
    if shared != data_dir and taken:
        raise ConfigError(
            f"the shared_dir {shared} is not empty (it holds {', '.join(taken)})",
            hint="restore once, on one node, into an empty shared_dir (move the old one "
            "aside); the other nodes then start on the restored database and shared_dir",
        )
    if database.is_postgres(config.database):
        database.check_postgres_empty(config.database)
    else:
        path = database.sqlite_path(config.database, data_dir)
        if path.exists():
            raise ConfigError(
                f"a database already exists at {path}",
                hint="restore into a new, empty data dir (move this one aside)",
            )


# -- writing ---------------------------------------------------------------------------------------


def _copy_out(handle: IO[bytes], dest: Path) -> None:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(handle, out, _COPY_BYTES)
        out.flush()
        os.fsync(out.fileno())


def _restore(
    archive: tarfile.TarFile, members: list[tarfile.TarInfo], manifest: Manifest, config: Config
) -> int:
    data_dir, shared = config.data_path, config.shared_path
    # A staging directory in each destination, so the last step is a rename on its own file
    # system (shared_dir is often a network mount).
    stagings = {root: root / STAGING_NAME for root in {data_dir, shared}}
    for staging in stagings.values():
        staging.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)  # a restore that died before its end
        staging.mkdir(mode=0o700)
    try:
        files = 0
        database_member = _database_member(manifest)
        for member in members:
            if member.name == MANIFEST_MEMBER or member.isdir():
                continue
            relative = PurePosixPath(member.name)
            if member.name == database_member:
                dest = stagings[data_dir] / relative.name
            else:
                root = restore_root(member.name, data_dir, shared)
                dest = stagings[root].joinpath(*relative.parts[1:])
                files += 1
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = archive.extractfile(member)
            assert handle is not None
            with handle:
                _copy_out(handle, dest)
        _restore_database(manifest, config, stagings[data_dir])
        for root, staging in stagings.items():
            for entry in sorted(staging.iterdir()):
                os.replace(entry, root / entry.name)
            fsync_dir(root)
    finally:
        for staging in stagings.values():
            shutil.rmtree(staging, ignore_errors=True)
    return files


def _restore_database(manifest: Manifest, config: Config, staging: Path) -> None:
    if manifest.database == "postgresql":
        dump = staging / PurePosixPath(database.POSTGRES_MEMBER).name
        database.restore_postgres(str(config.database), dump)
        database.forget_live_nodes(str(config.database))
        dump.unlink()
    else:
        snapshot = staging / PurePosixPath(database.SQLITE_MEMBER).name
        database.check_sqlite_snapshot(snapshot)
        target = database.sqlite_path(config.database, config.data_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(snapshot, target)
        fsync_dir(target.parent)
