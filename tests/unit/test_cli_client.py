"""The CLI's API client against a stand-in appliance over real TLS (tests/unit/cli_stub.py):
pinning, CA verification, error messages, the resumable log stream and streamed uploads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from octo_appliance.cli import client as client_module
from octo_appliance.cli.client import (
    ApiClient,
    ApiRefused,
    ClientError,
    Connection,
    LogLine,
    TaskEnd,
)
from octo_appliance.cli.upload import UPLOAD_CHUNK
from tests.unit.cli_stub import API_KEY, EarlyAnswerServer, StubAppliance


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubAppliance]:
    with StubAppliance(tmp_path) as appliance:
        yield appliance


def pinned(stub: StubAppliance, key: str = API_KEY) -> ApiClient:
    return ApiClient(Connection(stub.url, key, stub.thumbprint, timeout=30))


# -- trust -------------------------------------------------------------------------------------


def test_the_pinned_server_is_trusted_without_any_ca(stub: StubAppliance) -> None:
    with pinned(stub) as client:
        page = client.get("/packages")

    assert page == {"items": [], "total": 0}
    assert stub.recorded.api_keys == [API_KEY]


def test_a_server_with_another_certificate_never_receives_the_key(stub: StubAppliance) -> None:
    wrong = "ab" * 32

    with pytest.raises(ClientError) as caught:
        ApiClient(Connection(stub.url, API_KEY, wrong))

    assert f"the server presented certificate {stub.thumbprint}, expected {wrong}" in str(
        caught.value
    )
    assert "the API key was not sent" in caught.value.message
    assert stub.recorded.api_keys == []


def test_without_a_pin_the_certificate_must_chain_to_a_trusted_ca(
    stub: StubAppliance, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "no-cas.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with ApiClient(Connection(stub.url, API_KEY)) as client, pytest.raises(ClientError) as caught:
        client.get("/packages")
    assert "is not trusted" in caught.value.message
    assert "--server-thumbprint" in (caught.value.hint or "")
    assert stub.recorded.api_keys == []

    monkeypatch.setenv("SSL_CERT_FILE", str(stub.cert_file))  # now "a CA this machine trusts"
    with ApiClient(Connection(stub.url, API_KEY)) as client:
        assert client.get("/packages")["total"] == 0


def test_nothing_listening_is_a_clear_error(stub: StubAppliance) -> None:
    with (
        ApiClient(Connection("https://127.0.0.1:1", API_KEY)) as client,
        pytest.raises(ClientError) as caught,
    ):
        client.get("/packages")

    assert caught.value.message == "cannot reach the appliance at https://127.0.0.1:1: " + (
        "Connection refused"
    )


# -- errors ------------------------------------------------------------------------------------


def _error(code: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "details": [], **extra}}


@pytest.mark.parametrize(
    ("status", "body", "message", "hint"),
    [
        (401, _error("unauthenticated", "bad key"), "the appliance refused the API key", "api-key"),
        (
            403,
            _error("forbidden", "you lack deployment.create", hint="ask an admin"),
            "not allowed: you lack deployment.create",
            "ask an admin",
        ),
        (404, _error("not_found", "no project with id or name 'x'"), "no project", "id or name"),
        (
            404,
            _error("not_found", "no such endpoint: GET /api/v1/status/404"),
            "does not offer GET /api/v1/status/404",
            "upgrade the appliance",
        ),
        (
            409,
            _error("conflict", "already has 1.0.0", hint="choose another version"),
            "already has 1.0.0",
            "choose another version",
        ),
        (
            422,
            {
                "error": {
                    "code": "validation_failed",
                    "message": "unknown environment: Prod",
                    "details": [{"field": "environment", "message": "no environment 'Prod'"}],
                }
            },
            "unknown environment: Prod (environment: no environment 'Prod')",
            "correct the value the message names",  # the appliance gave none: ours
        ),
        (409, _error("conflict", "in use"), "in use", "the appliance's current state"),
        (500, _error("server_error", "boom"), "the appliance failed on GET", "log"),
        (502, None, "the appliance failed on GET /api/v1/status/502 (502): HTTP 502", "log"),
    ],
)
def test_refusals_say_what_went_wrong_and_what_to_do(
    stub: StubAppliance,
    status: int,
    body: object,
    message: str,
    hint: str,
) -> None:
    path = f"/status/{status}" + ("" if body is None else "?body=" + quote(json.dumps(body)))

    with pinned(stub) as client, pytest.raises(ApiRefused) as caught:
        client.get(path)

    assert caught.value.status == status
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")


def test_the_api_key_is_scrubbed_even_from_what_a_server_echoes(stub: StubAppliance) -> None:
    body = _error("server_error", f"bad header {API_KEY}", hint=f"not {API_KEY}")
    path = "/status/500?body=" + quote(json.dumps(body))

    with pinned(stub) as client, pytest.raises(ApiRefused) as caught:
        client.get(path)

    assert API_KEY not in str(caught.value)
    assert "bad header ********" in caught.value.message


def test_a_success_that_is_not_json_is_refused(stub: StubAppliance) -> None:
    with pinned(stub) as client, pytest.raises(ClientError) as caught:
        client.get("/status/200")

    assert "something other than JSON" in caught.value.message


# -- the log stream ----------------------------------------------------------------------------


def test_a_dropped_or_cut_stream_resumes_after_the_last_line(
    stub: StubAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "STREAM_RETRY_SECONDS", 0.0)
    stub.stream_script = ["drop", "close", "finish"]
    retries: list[str] = []

    with pinned(stub) as client:
        items = list(client.follow_log("task_1", on_retry=retries.append))

    lines = [item for item in items if isinstance(item, LogLine)]
    assert [line.data["message"] for line in lines] == [f"line {n}" for n in range(1, 6)]
    assert isinstance(items[-1], TaskEnd) and items[-1].state == "success"
    assert stub.recorded.stream_resumes == [None, "2", "4"]
    assert len(retries) == 2
    assert "ended before the task did" in retries[1]


def test_a_stream_that_keeps_failing_gives_up_with_how_to_resume(
    stub: StubAppliance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "STREAM_RETRY_SECONDS", 0.0)
    stub.lines_before_cut = 0
    stub.stream_script = ["drop"] * 20

    with pinned(stub) as client, pytest.raises(ClientError) as caught:
        list(client.follow_log("task_1", since=3))

    assert caught.value.message.startswith("lost the log stream of task task_1")
    assert "task log task_1 --follow --since 3" in (caught.value.hint or "")
    assert len(stub.recorded.stream_resumes) == client_module.STREAM_RETRIES + 1


# -- uploads -----------------------------------------------------------------------------------


def test_an_upload_streams_from_disk_with_its_length_and_progress(
    stub: StubAppliance, tmp_path: Path
) -> None:
    size = 40 * 1024 * 1024 + 123
    file = tmp_path / "Demo.1.0.0.zip"
    with file.open("wb") as out:
        for _ in range(size // (1024 * 1024) + 1):
            out.write(os.urandom(1024 * 1024))
        out.truncate(size)
    progress: list[tuple[int, int]] = []

    with pinned(stub) as client:
        tracemalloc.start()
        try:
            package = client.upload(
                "/packages",
                file,
                file_name=file.name,
                progress=lambda sent, total: progress.append((sent, total)),
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    # the client and the stub's receiving side together held far less than the file
    assert peak < size // 3, peak
    expected = hashlib.sha256(file.read_bytes()).hexdigest()
    upload = stub.recorded.uploads[0]
    assert (upload["file_name"], upload["size"], upload["sha256"]) == (file.name, size, expected)
    assert package["sha256"] == expected
    assert "transfer-encoding" not in upload["headers"]
    assert int(upload["headers"]["content-length"]) > size
    assert progress[-1] == (size, size)
    assert [sent for sent, _ in progress] == sorted(sent for sent, _ in progress)
    assert len(progress) > 10


def test_a_file_that_shrinks_while_uploading_sends_no_torn_copy(
    stub: StubAppliance, tmp_path: Path
) -> None:
    file = tmp_path / "Demo.1.0.0.zip"
    file.write_bytes(b"x" * (3 * UPLOAD_CHUNK))

    def shrink(sent: int, total: int) -> None:
        if sent == UPLOAD_CHUNK:
            os.truncate(file, sent)

    with pinned(stub) as client, pytest.raises(ClientError) as caught:
        client.upload("/packages", file, file_name=file.name, progress=shrink)

    assert "got shorter while it was uploaded" in caught.value.message
    assert stub.packages == []


def test_an_answer_before_the_end_of_the_body_is_heard_at_once(
    stub: StubAppliance, tmp_path: Path
) -> None:
    """The appliance refuses a duplicate as soon as it has read the file name and reads no
    more: the client must report that answer, not sit on a full socket until a timeout (the
    timeout here is far longer than the test may take, so waiting for it fails the test)."""
    size = 256 * 1024 * 1024
    file = tmp_path / "Demo.1.0.0.zip"
    with file.open("wb") as out:
        out.truncate(size)  # sparse: no disk needed for the part that is never sent
    progress: list[int] = []

    with (
        EarlyAnswerServer(stub, 409, "package Demo 1.0.0 already exists") as server,
        ApiClient(Connection(server.url, API_KEY, server.thumbprint, timeout=600)) as client,
        pytest.raises(ApiRefused) as caught,
    ):
        client.upload(
            "/packages",
            file,
            file_name=file.name,
            progress=lambda sent, total: progress.append(sent),
        )

    assert caught.value.status == 409
    assert caught.value.message == "package Demo 1.0.0 already exists"
    assert progress[-1] < size


def test_a_server_that_closes_without_an_answer_is_reported_as_such(
    stub: StubAppliance, tmp_path: Path
) -> None:
    file = tmp_path / "Demo.1.0.0.zip"
    with file.open("wb") as out:
        out.truncate(64 * 1024 * 1024)

    with (
        EarlyAnswerServer(stub, None) as server,
        ApiClient(Connection(server.url, API_KEY, server.thumbprint, timeout=600)) as client,
        pytest.raises(ClientError) as caught,
    ):
        client.upload("/packages", file, file_name=file.name)

    assert "closed the connection after" in caught.value.message
    assert "without an answer" in caught.value.message
    assert "package.push" in (caught.value.hint or "")
