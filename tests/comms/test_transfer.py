"""Files in both directions, verified by length and SHA-256; broken transfers leave nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from octo_appliance.comms import (
    CommsSettings,
    IncomingRequest,
    PeerLost,
    TransferError,
)
from octo_appliance.comms.framing import CONTROL_STREAM, FrameType

from .conftest import Identities, StartAgent, Watched, dial_agent
from .rawpeer import RawPeer, RawServer, raw_server

SIZE = 5 * 1024 * 1024 + 123  # several chunks and a short last one


def _random_file(path: Path, size: int = SIZE) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_upload_and_download_of_a_multi_megabyte_file(
    start_agent: StartAgent, tmp_path: Path, spool: Path, downloads: Path
) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()

    async def handler(request: IncomingRequest) -> Any:
        if request.method == "put":
            assert request.upload_path is not None
            assert request.upload_path.parent == spool
            digest = _sha256(request.upload_path)
            shutil.copy(request.upload_path, kept / "package")
            return {"sha256": digest, "size": request.upload_path.stat().st_size}
        request.respond_with_file(kept / "package")
        return {"name": "package"}

    agent = await start_agent(handler)
    conn = await agent.dial()
    source = tmp_path / "package.zip"
    digest = _random_file(source)

    stored = await conn.call("put", upload=source)
    fetched = await conn.call("get", download_dir=downloads)

    assert stored.result == {"sha256": digest, "size": SIZE}
    assert fetched.result == {"name": "package"}
    assert fetched.file_path is not None
    assert fetched.file_path.parent == downloads
    assert _sha256(fetched.file_path) == digest
    assert list(spool.iterdir()) == []  # the upload is removed once the handler returned


async def test_empty_file_round_trip(
    start_agent: StartAgent, tmp_path: Path, downloads: Path
) -> None:
    async def handler(request: IncomingRequest) -> Any:
        assert request.upload_path is not None
        request.respond_with_file(request.upload_path)
        return None

    agent = await start_agent(handler)
    conn = await agent.dial()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    response = await conn.call("echo-file", upload=empty, download_dir=downloads)

    assert response.file_path is not None
    assert response.file_path.read_bytes() == b""


async def _serve_raw_agent(ids: Identities, behaviour: Any) -> RawServer:
    """A raw agent: handshake, read the REQUEST, then ``behaviour(peer, stream)``."""

    async def on_peer(peer: RawPeer) -> None:
        peer.send_hello()
        assert (await peer.read()).type is FrameType.HELLO
        request = await peer.read()
        await behaviour(peer, request.stream)

    return await raw_server(ids.agent, on_peer)


@pytest.mark.parametrize(
    "end",
    [
        pytest.param({"length": 300_000, "sha256": "0" * 64}, id="wrong-hash"),
        pytest.param({"length": 299_999, "sha256": None}, id="wrong-length"),
        pytest.param({"length": 300_000}, id="no-hash"),
    ],
)
async def test_download_that_does_not_verify_is_deleted(
    ids: Identities, settings: CommsSettings, downloads: Path, end: dict[str, Any]
) -> None:
    data = os.urandom(300_000)

    async def corrupt(peer: RawPeer, stream: int) -> None:
        peer.send(FrameType.DATA, stream, data[:200_000])
        peer.send(FrameType.DATA, stream, data[200_000:])
        body = dict(end)
        if body.get("sha256", "") is None:
            body["sha256"] = hashlib.sha256(data).hexdigest()
        peer.send(FrameType.DATA_END, stream, body)
        peer.send(FrameType.RESPONSE, stream, {"result": "here", "file": True})
        await peer.read_until_eof()

    server = await _serve_raw_agent(ids, corrupt)
    try:
        conn = await dial_agent(server.port, ids, settings)
        with pytest.raises(TransferError, match=r"partial file was deleted|no valid length"):
            await conn.call("get", download_dir=downloads)
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()

    assert list(downloads.iterdir()) == []


async def test_download_cut_off_half_way_fails_and_leaves_nothing(
    ids: Identities, settings: CommsSettings, downloads: Path
) -> None:
    async def cut_off(peer: RawPeer, stream: int) -> None:
        peer.send(FrameType.DATA, stream, os.urandom(256 * 1024))
        peer.writer.write(b"\\x05\\x00")  # half a header
        await peer.writer.drain()
        peer.abort()

    server = await _serve_raw_agent(ids, cut_off)
    try:
        conn = await dial_agent(server.port, ids, settings)
        with pytest.raises(PeerLost, match="lost the connection"):
            await conn.call("get", download_dir=downloads)
        await conn.wait_closed()
    finally:
        await server.close()

    assert list(downloads.iterdir()) == []


async def test_upload_that_does_not_verify_never_reaches_the_handler(
    watched: Watched, spool: Path
) -> None:
    peer, called = watched.peer, watched.called

    peer.send(FrameType.REQUEST, 1, {"method": "put", "params": {}, "upload": True})
    peer.send(FrameType.DATA, 1, b"a" * 1000)
    peer.send(
        FrameType.DATA_END, 1, {"length": 1000, "sha256": hashlib.sha256(b"b" * 1000).hexdigest()}
    )
    response = await peer.read()

    assert response.type is FrameType.RESPONSE
    assert response.stream == 1
    assert response.json()["error"]["code"] == "transfer_failed"
    assert called == []
    assert list(spool.iterdir()) == []
    peer.send(FrameType.GOAWAY, CONTROL_STREAM, {"reason": "test over"})
    peer.abort()


async def test_upload_cut_off_half_way_is_deleted(watched: Watched, spool: Path) -> None:
    peer, called = watched.peer, watched.called
    peer.send(FrameType.REQUEST, 1, {"method": "put", "params": {}, "upload": True})
    peer.send(FrameType.DATA, 1, os.urandom(100_000))
    await peer.writer.drain()
    async with asyncio.timeout(5):
        while not list(spool.iterdir()):  # the spool file exists while the upload runs
            await asyncio.sleep(0.01)

    peer.abort()

    async with asyncio.timeout(5):
        while watched.agent.server.connections or list(spool.iterdir()):
            await asyncio.sleep(0.01)
    assert called == []


async def test_upload_cancelled_half_way_is_deleted_and_never_handled(
    watched: Watched, spool: Path
) -> None:
    peer, called = watched.peer, watched.called
    peer.send(FrameType.REQUEST, 1, {"method": "put", "params": {}, "upload": True})
    peer.send(FrameType.DATA, 1, os.urandom(100_000))

    peer.send(FrameType.CANCEL, 1, b"")
    peer.send(FrameType.DATA, 1, b"late chunk, ignored")
    peer.send(FrameType.REQUEST, 3, {"method": "next", "params": {}})
    response = await peer.read()

    assert (response.stream, response.json()) == (3, {"result": "ok", "file": False})
    assert called == ["next"]
    assert list(spool.iterdir()) == []
    peer.abort()


async def test_download_cancelled_half_way_is_deleted_and_the_sender_told(
    ids: Identities, settings: CommsSettings, downloads: Path
) -> None:
    told: list[FrameType] = []

    async def slow_sender(peer: RawPeer, stream: int) -> None:
        peer.send(FrameType.DATA, stream, os.urandom(100_000))
        frame = await peer.read()
        told.append(frame.type)
        await peer.read_until_eof()

    server = await _serve_raw_agent(ids, slow_sender)
    try:
        conn = await dial_agent(server.port, ids, settings)
        call = asyncio.create_task(conn.call("get", download_dir=downloads))
        async with asyncio.timeout(5):
            while not list(downloads.iterdir()):
                await asyncio.sleep(0.005)

        call.cancel()

        with pytest.raises(asyncio.CancelledError):
            await call
        async with asyncio.timeout(5):
            while not told:
                await asyncio.sleep(0.005)
        conn.close()
        await conn.wait_closed()
    finally:
        await server.close()

    assert told == [FrameType.CANCEL]
    assert list(downloads.iterdir()) == []
