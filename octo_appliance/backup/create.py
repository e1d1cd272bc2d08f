"""``octo-appliance backup``: write a consistent backup while the server keeps running.

The database is copied first (one consistent instant: SQLite's backup API or ``pg_dump``), then
the sealed files (of the data dir and, with several nodes, of ``shared_dir``: packages, the
signing key, the generated certificate). Sealed files are never changed in place (written to a
temporary name and renamed), so each file copied is whole; a file added after the database
snapshot is an unreferenced extra, and one deleted meanwhile is reported as left out. The backup
holds the shared in-use lock (``db.in_use``): a master-key rotation cannot run during it, so the
key ids recorded are the ones the data is under. It needs no master key and never contains one.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from octo_appliance import __version__
from octo_appliance.backup import database
from octo_appliance.backup.archive import (
    MANIFEST_MEMBER,
    Manifest,
    Source,
    backup_sources,
    member_name,
)
from octo_appliance.certificate import ENCRYPTED_PEM_MARKER
from octo_appliance.certificate import KEY_FILE_NAME as TLS_KEY_FILE_NAME
from octo_appliance.config import Config
from octo_appliance.db.in_use import hold_shared
from octo_appliance.exceptions import ConfigError
from octo_appliance.filesystem.durable import fsync_dir
from octo_appliance.vault.files import (
    FILES_DIR_NAME,
    REKEY_SUFFIX,
    WRITING_SUFFIX,
    is_sealed_file,
    key_id_of_file,
)
from octo_appliance.vault.keys import key_file_path, legacy_key_file


@dataclass
class BackupResult:
    output: Path
    manifest: Manifest
    files: int = 0
    bytes: int = 0
    #: data dir entries not in the backup, each with the reason
    left_out: list[str] = field(default_factory=list)


def _never_copied(data_dir: Path, config: Config) -> set[Path]:
    """The key file, wherever it is: never part of a backup."""
    return {key_file_path(config.master_key_file).resolve(), legacy_key_file(data_dir).resolve()}


def _data_files(config: Config, left_out: list[str]) -> Iterator[tuple[Path, str]]:
    """Every file to copy and its name in the backup."""
    data_dir = config.data_path
    never = _never_copied(data_dir, config)
    for source in backup_sources(data_dir, _shared_dir(config)):
        for path in _entry_files(source):
            relative = PurePosixPath(path.relative_to(source.root).as_posix())
            if path.resolve() in never:
                left_out.append(f"{relative} (the master key)")
                continue
            if (
                path == source.root / TLS_KEY_FILE_NAME
                and ENCRYPTED_PEM_MARKER not in path.read_bytes()
            ):
                left_out.append(f"{TLS_KEY_FILE_NAME} (not encrypted: an operator's key)")
                continue
            yield path, member_name(source.prefix, relative)


def _entry_files(source: Source) -> Iterator[Path]:
    for entry in source.entries:
        root = source.root / entry
        if root.is_file() and not root.is_symlink():
            candidates: Iterator[Path] = iter([root])
        elif root.is_dir() and not root.is_symlink():
            candidates = (p for p in sorted(root.rglob("*")) if p.is_file())
        else:
            continue
        for path in candidates:
            if path.name.endswith((WRITING_SUFFIX, REKEY_SUFFIX)) or path.is_symlink():
                continue  # an upload or a rotation in progress: not data yet
            yield path


def _shared_dir(config: Config) -> Path:
    """``shared_dir`` (else the data dir); a missing one is an error, not an empty backup."""
    shared = config.shared_path
    if not shared.is_dir():
        raise ConfigError(
            f"shared_dir {shared} does not exist",
            hint="run the backup on a node that has the shared directory mounted",
        )
    return shared


def _file_key_ids(copies: list[tuple[Path, str]]) -> set[str]:
    found = set()
    for path, name in copies:
        if PurePosixPath(name).parts[1] == FILES_DIR_NAME and is_sealed_file(path):
            try:
                found.add(key_id_of_file(path))
            except OSError:
                continue  # deleted since it was listed: reported when it is copied
    return found


def _add_file(archive: tarfile.TarFile, path: Path, name: str) -> int | None:
    """Add one file as it is now (its size from the open handle); None when it is gone."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the fstat
    except FileNotFoundError:
        return None
    with handle:
        stat = os.fstat(handle.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = stat.st_size, 0o600, int(stat.st_mtime)
        archive.addfile(info, handle)
        return stat.st_size


def make_backup(config: Config, output: Path) -> BackupResult:
    data_dir = config.data_path
    if not data_dir.is_dir():
        raise ConfigError(
            f"data dir {data_dir} does not exist",
            hint="pass the --data-dir (and --database) the server uses",
        )
    _shared_dir(config)  # before the dump: a node without the mount cannot make a whole backup
    if output.exists() and output.is_dir():
        raise ConfigError(f"--output {output} is a directory", hint="name a file to write")
    output.parent.mkdir(parents=True, exist_ok=True)
    with hold_shared(data_dir, config.database, then="run the backup"):
        work = Path(tempfile.mkdtemp(prefix=".octo-backup-", dir=output.parent))
        try:
            return _write(config, output, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _write(config: Config, output: Path, work: Path) -> BackupResult:
    data_dir = config.data_path
    if database.is_postgres(config.database):
        kind, member, dump = "postgresql", database.POSTGRES_MEMBER, work / "postgresql.dump"
        key_ids, version = database.dump_postgres(config.database, dump)
    else:
        kind, member, dump = "sqlite", database.SQLITE_MEMBER, work / "octo.db"
        source = database.sqlite_path(config.database, data_dir)
        key_ids, version = database.snapshot_sqlite(source, dump)
    left_out: list[str] = []
    copies = list(_data_files(config, left_out))
    key_ids |= _file_key_ids(copies)
    manifest = Manifest(
        appliance_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        database=kind,
        schema_version=version,
        key_ids=sorted(key_ids),
    )
    result = BackupResult(output, manifest, left_out=left_out)
    partial = work / "backup.tar"
    with open(partial, "wb") as raw:
        os.fchmod(raw.fileno(), 0o600)
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
            manifest_file = work / MANIFEST_MEMBER
            manifest_file.write_bytes(manifest.to_bytes())
            _add_file(archive, manifest_file, MANIFEST_MEMBER)
            _add_file(archive, dump, member)
            for path, name in copies:
                size = _add_file(archive, path, name)
                if size is None:
                    left_out.append(f"{name} (deleted during the backup)")
                    continue
                result.files += 1
                result.bytes += size
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(partial, output)  # a backup file that exists is a whole one
    fsync_dir(output.parent)
    return result
