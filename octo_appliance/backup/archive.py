"""The backup file's layout: a tar of a manifest, the database and the data dir's sealed files.

Members, in this order::

    octo-backup.json              the manifest (versions, database kind, master-key ids)
    database/octo.db              SQLite snapshot   (or database/postgresql.dump: pg_dump -Fc)
    data/files/...                packages, artifacts: sealed files, copied still sealed
    data/tls.crt, data/tls.key    the generated certificate; its key encrypted under the master key
    data/plugins/...              plugins installed in the data dir

Never the master key: the data dir entries are an allow-list (:data:`DATA_ENTRIES`), and the
key file is skipped even where an operator keeps it inside the data dir. The manifest names
the ids of the keys the data is sealed under (an id reveals nothing of its key), so a restore
can say which key it needs before it writes anything.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from octo_appliance.exceptions import ConfigError

MANIFEST_MEMBER = "octo-backup.json"
FORMAT_NAME = "octo-appliance-backup"
FORMAT_VERSION = 1
DATA_PREFIX = "data"
#: What of the data dir a backup holds; the rest (runner build, work dirs, spool, the lock) is
#: made again at start.
DATA_ENTRIES = ("files", "plugins", "tls.crt", "tls.key")


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


def data_member_name(relative: PurePosixPath) -> str:
    return str(PurePosixPath(DATA_PREFIX) / relative)


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
    raise not_a_backup(source, f"unexpected entry {member.name!r}")
