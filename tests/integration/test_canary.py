"""A copy of the data dir or the database, without the master key, reveals no sensitive value.

A sensitive variable carrying a unique canary is set through the API on SQLite and on
PostgreSQL. Then every byte of every file in the data dir (the SQLite database with its
``-wal``/``-shm`` files included; the master key is not there: it lives apart), a ``pg_dump`` of
the PostgreSQL database, an ``octo-appliance backup`` file, every API response and the audit
log are searched for the canary, raw and in base64 and hex.
A plain (non-sensitive) marker set beside it must be found by the same search, which proves the
search reads the stored data; and the sealed value must still open with the key.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from octo_appliance.backup.create import make_backup
from octo_appliance.db import AuditEvent, Variable

MASTER_KEY_FILE = "master.key"


def encodings(secret: str) -> list[bytes]:
    """The byte strings that would betray ``secret``: raw, hex, and base64 at every alignment.

    Base64 of a value embedded in other bytes depends on where it starts modulo 3; the middle
    of the encoding of ``pad + secret`` (without the groups touching the edges) is the same
    whatever surrounds it, for each of the three alignments.
    """
    raw = secret.encode("utf-8")
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * pad + raw)
            forms.append(encoded[4:-4])
    return forms


def leaks(blob: bytes, secret: str) -> list[bytes]:
    return [form for form in encodings(secret) if form in blob]


def data_dir_bytes(data_dir: Path) -> dict[str, bytes]:
    """Every file of the data dir, as a copy of it would hold them."""
    files = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            files[str(path.relative_to(data_dir))] = path.read_bytes()
    return files


def pg_dump(database_url: str) -> bytes:
    binary = shutil.which("pg_dump")
    if binary is None:
        pytest.fail("pg_dump is not installed (apt-get install postgresql-client)")
    done = subprocess.run(
        [binary, "--no-owner", f"--dbname={database_url}"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def pg_restore_sql(dump: Path) -> bytes:
    binary = shutil.which("pg_restore")
    assert binary is not None, "pg_restore is not installed (apt-get install postgresql-client)"
    done = subprocess.run([binary, "-f", "-", str(dump)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def test_no_sensitive_value_in_data_dir_database_api_or_audit(octo, database_url, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    api = octo.api
    canary = "canary-" + secrets.token_hex(16)
    marker = "plain-marker-" + secrets.token_hex(16)

    project = api.post("/projects", json={"name": "Canary"}).json()
    api.post("/environments", json={"name": "Prod"})
    body = {
        "variables": [
            {"name": "Secret", "value": canary, "sensitive": True},
            {"name": "Scoped", "value": canary, "sensitive": True, "scope": {"roles": ["db"]}},
            {"name": "Plain", "value": marker},
        ]
    }
    put = api.put(f"/projects/{project['id']}/variables", json=body)
    assert put.status_code == 200, put.text
    # a round trip and an update of the plain value leave the sealed ones in place
    fetched = api.get("/projects/Canary/variables")
    round_trip = api.put("/projects/Canary/variables", json=fetched.json())
    assert round_trip.status_code == 200

    # stored at all: the sealed value opens with the key
    rows = list(Variable.select().where(Variable.sensitive == True))  # noqa: E712
    assert len(rows) == 2
    for row in rows:
        assert row.value is None
        assert octo.appliance.vault.open(row.sealed_value, row.aad("sealed_value")) == canary

    # (c) API responses and the audit log
    responses = [put, fetched, round_trip, api.get("/projects/Canary"), api.get("/projects")]
    audit = api.get("/audit")
    if audit.status_code == 200:
        responses.append(audit)
    for response in responses:
        assert not leaks(response.content, canary), response.url
    assert marker in fetched.text  # the plain value is returned, so the search is not blind
    events = list(AuditEvent.select().tuples())
    assert any(event for event in events if "variables" in event)
    assert not leaks(json.dumps(events, default=str).encode(), canary)
    assert not leaks(caplog.text.encode(), canary)

    # (a) every file of the data dir: the key is not among them
    files = data_dir_bytes(octo.appliance.data_dir)
    assert not [name for name in files if MASTER_KEY_FILE in name]
    key_text = octo.appliance.vault.ring.current.to_text().encode()
    assert not [name for name, blob in files.items() if key_text in blob]
    for name, blob in files.items():
        assert not leaks(blob, canary), f"the canary is readable in {name}"
    if database_url is None:
        assert any(name.startswith("octo.db") for name in files)
        assert any(marker.encode() in blob for blob in files.values()), (
            "the plain marker was not found: the search does not see the database files"
        )
    else:
        # (b) a dump of the PostgreSQL database
        dump = pg_dump(database_url)
        assert marker.encode() in dump
        assert not leaks(dump, canary), "the canary is readable in pg_dump output"

    # (d) a backup file (its PostgreSQL dump is compressed: read it as SQL too)
    path = make_backup(octo.appliance.config, tmp_path / "backup.tar").output
    backup = path.read_bytes()
    if database_url is not None:
        with tarfile.open(path) as archive:
            archive.extract("database/postgresql.dump", tmp_path, filter="data")
        backup += pg_restore_sql(tmp_path / "database" / "postgresql.dump")
    assert marker.encode() in backup
    assert not leaks(backup, canary), "the canary is readable in a backup"
    assert key_text not in backup
