"""The backup file's layout: a tar of a manifest, the database and the data dir's sealed files.

Members, in this order::

    octo-backup.json              the manifest (versions, database kind, master-key ids)
    database/octo.db              SQLite snapshot   (or database/postgresql.dump: pg_dump -Fc)
    data/files/...                packages, artifacts, the signing key: sealed files, still sealed
    data/tls.crt, data/tls.key    the generated certificate; its key encrypted under the master key
    data/plugins/...              plugins installed in the data dir

With a ``shared_dir`` (several nodes, docs/ha.md) the files every node reads there are taken
from it and named ``shared/files/...``, ``shared/tls.crt``, ``shared/tls.key`` instead of
``data/...``. A restore puts them where the restoring appliance reads them: its ``shared_dir``
when it has one, else its data dir (:func:`restore_root`), whichever prefix they carry.

Never the master key: the data dir entries are an allow-list (:data:`DATA_ENTRIES`), and the
key file is skipped even where an operator keeps it inside the data dir. The manifest names
the ids of the keys the data is sealed under (an id reveals nothing of its key), so a restore
can say which key it needs before it writes anything.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from octo_appliance.exceptions import ConfigError

MANIFEST_MEMBER = "octo-backup.json"
FORMAT_NAME = "octo-appliance-backup"
FORMAT_VERSION = 1
DATA_PREFIX = "data"
#: What of the data dir a backup holds; the rest (runner build, work dirs, spool, the lock) is
#: made again at start.
DATA_ENTRIES = ("files", "plugins", "tls.crt", "tls.key")
SHARED_PREFIX = "shared"
#: Of those, what lives in ``shared_dir`` when one is set (every node reads it there).
SHARED_ENTRIES = ("files", "tls.crt", "tls.key")


@dataclass(frozen=True)
class Source:
    """A directory a backup copies entries of, and the prefix they get in the file."""

    root: Path
    prefix: str
    entries: tuple[str, ...]


def backup_sources(data_dir: Path, shared_dir: Path) -> list[Source]:
    """The data dir's entries; with a separate ``shared_dir``, the shared ones from there."""
    if shared_dir == data_dir:
        return [Source(data_dir, DATA_PREFIX, DATA_ENTRIES)]
    node_only = tuple(entry for entry in DATA_ENTRIES if entry not in SHARED_ENTRIES)
    return [
        Source(data_dir, DATA_PREFIX, node_only),
        Source(shared_dir, SHARED_PREFIX, SHARED_ENTRIES),
    ]


def restore_root(member_name: str, data_dir: Path, shared_dir: Path) -> Path:
    """Where a ``data/…`` or ``shared/…`` entry goes back: shared entries to ``shared_dir``
    (the data dir when none is set), the rest to the data dir."""
    return shared_dir if PurePosixPath(member_name).parts[1] in SHARED_ENTRIES else data_dir


def not_a_backup(source: str, why: str) -> ConfigError:
    return ConfigError(
        f"{source} is not an octo-appliance backup: {why}",
        hint="pass a file written by 'octo-appliance backup --output FILE'",
    )


@dataclass(frozen=True)
class Manifest:
    appliance_version: str
    created: str
    #: "sqlite" or "postgresql"
    database: str
    schema_version: int
    #: ids of the master keys the sealed values and files are under
    key_ids: list[str]

    def to_bytes(self) -> bytes:
        body = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **asdict(self)}
        return json.dumps(body, indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT_NAME:
                raise ValueError("format")
            if raw.get("version") != FORMAT_VERSION:
                raise not_a_backup(
                    source, f"format version {raw.get('version')} (this appliance reads 1)"
                )
            manifest = cls(
                appliance_version=str(raw["appliance_version"]),
                created=str(raw["created"]),
                database=str(raw["database"]),
                schema_version=int(raw["schema_version"]),
                key_ids=[str(key_id) for key_id in raw["key_ids"]],
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise not_a_backup(source, "its manifest is damaged") from None
        if manifest.database not in {"sqlite", "postgresql"}:
            raise not_a_backup(source, f"unknown database kind {manifest.database!r}")
        return manifest


def member_name(prefix: str, relative: PurePosixPath) -> str:
    return str(PurePosixPath(prefix) / relative)


def check_member(member: tarfile.TarInfo, source: str, database_member: str) -> None:
    """Only the names and kinds this module writes: no links, devices, ``..`` or absolute paths."""
    path = PurePosixPath(member.name)
    parts = path.parts
    bad_part = any(part in {"", ".", ".."} for part in parts) or "\\" in member.name
    if path.is_absolute() or bad_part or not (member.isfile() or member.isdir()):
        raise not_a_backup(source, f"unexpected entry {member.name!r}")
    if member.name in {MANIFEST_MEMBER, database_member}:
        return
    if len(parts) >= 2 and parts[0] == DATA_PREFIX and parts[1] in DATA_ENTRIES:
        return
    if len(parts) >= 2 and parts[0] == SHARED_PREFIX and parts[1] in SHARED_ENTRIES:
        return
    raise not_a_backup(source, f"unexpected entry {member.name!r}")
