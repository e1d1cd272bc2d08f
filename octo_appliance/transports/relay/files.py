"""A relayed call's files as sealed chunk rows: the upload (``up``: a package for the agent's
cache) and the file an answer carries (``down``: ``files.fetch``).

Chunks are sealed like every relay body (base64 inside the seal: the vault seals text), read
and written a few at a time so a large package never sits in memory whole, and deleted with
their call. The agent's node checks the upload's SHA-256 as the agent does (the comms layer
verifies every transfer); the caller's node gets the downloaded file verified by the agent's
node and protected on the way by the seal's authentication.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from octo_appliance.comms import UploadSource
from octo_appliance.comms.errors import TransferError
from octo_appliance.comms.transfer import open_upload
from octo_appliance.transports.relay.pg import Pool
from octo_appliance.transports.relay.wire import Sealer

CHUNK_BYTES = 512 * 1024
#: chunks written or read per round trip
BATCH = 8


async def put_chunks(
    pool: Pool, vault: Sealer, call_id: str, direction: str, source: UploadSource
) -> int:
    """Store ``source`` as the call's ``direction`` chunks; returns how many."""
    file = await open_upload(source, "the relayed upload")
    count = 0
    try:
        while True:
            rows = []
            for _ in range(BATCH):
                data = await asyncio.to_thread(file.read, CHUNK_BYTES)
                if not data:
                    break
                rows.append(_row(vault, call_id, direction, count, bytes(data)))
                count += 1
            if rows:
                async with pool.connection() as conn, conn.cursor() as cur:
                    await cur.executemany(
                        'INSERT INTO "relay_chunk" ("id", "call_id", "direction", "seq", "body") '
                        "VALUES (%s, %s, %s, %s, %s)",
                        rows,
                    )
            if len(rows) < BATCH:
                return count
    finally:
        file.close()


def _row(
    vault: Sealer, call_id: str, direction: str, seq: int, data: bytes
) -> tuple[str, str, str, int, str]:
    text = base64.b64encode(data).decode("ascii")
    body = vault.seal(text, f"relay/{call_id}/{direction}/{seq}".encode())
    return (f"{call_id[:30]}-{direction[0]}{seq}", call_id, direction, seq, body)


async def get_chunks(
    pool: Pool, vault: Sealer, call_id: str, direction: str, count: int, into: Path
) -> Path:
    """The call's ``direction`` chunks, as a new file in ``into`` (deleted on failure)."""
    into.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="relay-", dir=into)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            for start in range(0, count, BATCH):
                async with pool.connection() as conn:
                    cur = await conn.execute(
                        'SELECT "seq", "body" FROM "relay_chunk" WHERE "call_id" = %s '
                        'AND "direction" = %s AND "seq" >= %s AND "seq" < %s ORDER BY "seq"',
                        (call_id, direction, start, start + BATCH),
                    )
                    rows = await cur.fetchall()
                if [row[0] for row in rows] != list(range(start, min(start + BATCH, count))):
                    raise TransferError(
                        "a relayed file lost chunks on the way",
                        hint="retry; the node that sent it may have stopped",
                    )
                await asyncio.to_thread(_write, out, vault, call_id, direction, rows)
        return path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write(
    out: BinaryIO, vault: Sealer, call_id: str, direction: str, rows: list[tuple[object, ...]]
) -> None:
    for seq, body in rows:
        text = vault.open(str(body), f"relay/{call_id}/{direction}/{seq}".encode())
        out.write(base64.b64decode(text))
