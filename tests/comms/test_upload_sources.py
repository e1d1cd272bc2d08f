"""Uploads from memory and from an opener (a stream made on demand), not only from a path."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from octo_appliance.comms import (
    ConnectionClosed,
    IncomingRequest,
    KnownContent,
    KnownStream,
    TransferError,
)

from .conftest import StartAgent

SIZE = 3 * 1024 * 1024 + 5


class TrackedStream(io.BytesIO):
    """A stream that remembers it was closed."""

    closed_by_sender = False

    def close(self) -> None:
        TrackedStream.closed_by_sender = True
        super().close()


async def echo_hash(request: IncomingRequest) -> Any:
    assert request.upload_path is not None
    data = request.upload_path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}


async def test_bytes_upload(start_agent: StartAgent) -> None:
    agent = await start_agent(echo_hash)
    conn = await agent.dial()
    data = os.urandom(SIZE)

    response = await conn.call("put", upload=data)

    assert response.result == {"sha256": hashlib.sha256(data).hexdigest(), "length": SIZE}


async def test_opener_upload_runs_the_opener_off_the_loop_and_closes_the_stream(
    start_agent: StartAgent,
) -> None:
    agent = await start_agent(echo_hash)
    conn = await agent.dial()
    data = os.urandom(SIZE)
    loop_thread = threading.get_ident()
    opened_in: list[int] = []

    def opener() -> BinaryIO:
        opened_in.append(threading.get_ident())
        return TrackedStream(data)

    TrackedStream.closed_by_sender = False
    response = await conn.call("put", upload=opener)

    assert response.result == {"sha256": hashlib.sha256(data).hexdigest(), "length": SIZE}
    assert opened_in and opened_in[0] != loop_thread
    assert TrackedStream.closed_by_sender


async def test_an_opener_that_fails_sends_nothing(start_agent: StartAgent, spool: Path) -> None:
    calls: list[str] = []

    async def handler(request: IncomingRequest) -> Any:
        calls.append(request.method)
        return None

    agent = await start_agent(handler)
    conn = await agent.dial()

    def opener() -> BinaryIO:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(TransferError, match="cannot open the upload"):
        await conn.call("put", upload=opener)
    assert (await conn.call("ping")).result is None
    assert calls == ["ping"]
    assert list(spool.iterdir()) == []


async def test_a_stream_opened_for_a_closed_connection_is_closed(start_agent: StartAgent) -> None:
    agent = await start_agent(echo_hash)
    conn = await agent.dial()
    conn.close("test")
    await conn.wait_closed()
    TrackedStream.closed_by_sender = False

    with pytest.raises(ConnectionClosed):
        await conn.call("put", upload=lambda: TrackedStream(b"data"))
    assert TrackedStream.closed_by_sender


def _known_stream(data: bytes, sha256: str) -> KnownStream:
    return KnownStream(lambda: io.BytesIO(data), sha256)


@pytest.mark.parametrize("known", [KnownContent, _known_stream], ids=["memory", "stream"])
async def test_known_content_is_sent_with_its_digest_and_a_wrong_one_fails(
    start_agent: StartAgent, known: Any
) -> None:
    """Sent under the digest it is known by, not one hashed on the way: the receiver, which
    hashes what arrives, refuses a wrong one."""
    agent = await start_agent(echo_hash)
    conn = await agent.dial()
    data = os.urandom(SIZE)
    right = known(data, hashlib.sha256(data).hexdigest())

    response = await conn.call("put", upload=right)
    assert response.result == {"sha256": hashlib.sha256(data).hexdigest(), "length": SIZE}

    wrong = known(data, hashlib.sha256(b"other").hexdigest())
    with pytest.raises(TransferError, match="does not match the sender's"):
        await conn.call("put", upload=wrong)
