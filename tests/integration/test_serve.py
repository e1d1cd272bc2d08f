"""``octo-appliance serve`` as a real process on real sockets: HTTP/1.1, HTTP/2, HTTP/3 on one
port, the certificate and its thumbprint, signals, restarts, the CLI beside a running server,
start-up errors and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from octo_appliance.certificate import load_or_create_certificate
from octo_appliance.config import load_config
from octo_appliance.testing import keep_key_beside
from octo_appliance.vault.keys import KeyRing, MasterKey
from tests.cli_support import run_octo
from tests.conftest import reset_pg_schema
from tests.h3client import H3Client, h3_get
from tests.serve_process import ServeProcess

HEALTH = "/api/v1/health"
#: guards against a hang, not a timing assertion
H3_TIMEOUT = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve") / "data") as process:
        yield process


run_cli = run_octo


def test_first_start_prints_generated_admin_password_and_facts(server: ServeProcess) -> None:
    banner = server.banner
    assert banner.first_start
    assert banner.admin_password and len(banner.admin_password) >= 16
    assert banner.host == "127.0.0.1" and banner.port > 0
    assert banner.h3_port == banner.port
    assert banner.database == f"SQLite {server.data_dir / 'octo.db'}"
    assert f"data dir: {server.data_dir}" in banner.lines
    assert banner.cert_file == server.data_dir / "tls.crt"
    assert len(banner.thumbprint) == 64 and banner.thumbprint == banner.thumbprint.lower()
    # the README's first command ends with where to go and who to sign in as
    assert banner.lines[-1] == (
        f"portal: {banner.url} (sign in as 'admin' with the admin password above)"
    )


def test_the_key_file_is_encrypted_and_private(server: ServeProcess) -> None:
    key_file = server.data_dir / "tls.key"
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_http2_health_with_alt_svc_security_headers_and_pinned_certificate(
    server: ServeProcess,
) -> None:
    with server.http2_client() as client:
        response = client.get(HEALTH)
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
        peer_der = ssl_object.getpeercert(True)
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    assert response.json()["status"] == "ok"
    assert f'h3=":{server.port}"' in response.headers["alt-svc"]
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "server" not in response.headers
    assert hashlib.sha256(peer_der).hexdigest() == server.banner.thumbprint


def test_http1_is_served_on_the_same_port(server: ServeProcess) -> None:
    import httpx

    with httpx.Client(verify=server.ssl_context()) as client:
        response = client.get(server.url + HEALTH.lstrip("/"))
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"


async def test_http3_health_verified_against_the_certificate(server: ServeProcess) -> None:
    status, headers, body = await asyncio.wait_for(
        h3_get(server.host, server.port, HEALTH, cafile=server.cert_file), H3_TIMEOUT
    )
    assert status == 200
    assert dict(headers)["x-frame-options"] == "DENY"
    assert b'"status":"ok"' in body


async def test_http3_connection_carries_concurrent_requests(server: ServeProcess) -> None:
    async def exchange() -> list[int]:
        async with H3Client(server.host, server.port, cafile=server.cert_file) as client:
            responses = await asyncio.gather(*(client.get(HEALTH) for _ in range(10)))
            responses.append(await client.get("/api/v1/no-such-thing"))
        return [r.status for r in responses]

    statuses = await asyncio.wait_for(exchange(), H3_TIMEOUT)
    assert statuses == [200] * 10 + [404]


async def test_http3_refuses_a_certificate_it_does_not_trust(
    server: ServeProcess, tmp_path: Path
) -> None:
    other = load_or_create_certificate(
        load_config({"data_dir": str(tmp_path)}, environ={}), KeyRing(MasterKey.generate())
    )
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(
            h3_get(server.host, server.port, HEALTH, cafile=other.cert_file), H3_TIMEOUT
        )


def _http1_response(tls: ssl.SSLSocket) -> bytes:
    """One HTTP/1.1 response (headers and a Content-Length body); b"" if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += tls.recv(65536)
    return head


def test_an_idle_keep_alive_connection_is_kept_between_calls(server: ServeProcess) -> None:
    """A client's pooled connection idle for a few seconds is still there (Hypercorn's default
    5 s cut it, and a call sent as the server closed it failed)."""
    context = server.ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    request = f"GET {HEALTH} HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode()
    with (
        socket.create_connection((server.host, server.port)) as raw,
        context.wrap_socket(raw, server_hostname=server.host) as tls,
    ):
        tls.settimeout(H3_TIMEOUT)
        tls.sendall(request)
        assert _http1_response(tls).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # longer than Hypercorn's default idle timeout
        tls.sendall(request)
        assert _http1_response(tls).startswith(b"HTTP/1.1 200")


def test_api_key_created_beside_the_running_server_works(server: ServeProcess) -> None:
    result = run_cli("api-key", "create", "--data-dir", str(server.data_dir), "--user", "admin")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    with server.http2_client() as client:
        anonymous = client.get("/api/v1/environments")
        authorised = client.get("/api/v1/environments", headers={"X-Api-Key": key})
    assert anonymous.status_code == 401
    assert authorised.status_code == 200, authorised.text


def test_signals_stop_within_two_seconds_and_restart_reuses_everything(tmp_path: Path) -> None:
    """SIGTERM, a master-key rotation while stopped, a restart with the same identity, SIGINT."""
    data_dir = tmp_path / "data"
    first = ServeProcess(data_dir, env={"OCTO_ADMIN_PASSWORD": "correct-horse-battery-1"})
    with first:
        assert "admin password: taken from OCTO_ADMIN_PASSWORD" in first.banner.lines
        assert first.banner.admin_password is None
        assert not any("correct-horse" in line for line in first.banner.lines)
        with first.http2_client() as client:
            # an idle keep-alive connection stays open across the signal
            assert client.get(HEALTH).status_code == 200
            code, seconds = _stop_timed(first, signal.SIGTERM)
    assert code == 0
    assert seconds < 2.0
    assert "correct-horse" not in first.output()
    assert "Traceback" not in first.stderr

    key_before = (data_dir / "tls.key").read_bytes()
    rotated = run_cli("master-key", "rotate", "--data-dir", str(data_dir))
    assert rotated.returncode == 0, rotated.stderr
    assert (data_dir / "tls.key").read_bytes() != key_before

    with ServeProcess(data_dir) as second:
        assert not second.banner.first_start
        assert not any("password" in line for line in second.banner.lines)
        assert second.banner.thumbprint == first.banner.thumbprint
        status, _, _ = asyncio.run(
            asyncio.wait_for(
                h3_get(second.host, second.port, HEALTH, cafile=second.cert_file), H3_TIMEOUT
            )
        )
        assert status == 200
        code, seconds = _stop_timed(second, signal.SIGINT)
    assert code == 0
    assert seconds < 2.0
    assert "Traceback" not in second.stderr


def test_a_request_waiting_for_its_body_does_not_hold_up_stop(tmp_path: Path) -> None:
    with ServeProcess(tmp_path / "data") as process:
        context = process.ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        with (
            socket.create_connection((process.host, process.port)) as raw,
            context.wrap_socket(raw, server_hostname=process.host) as tls,
        ):
            tls.sendall(
                b"POST /api/v1/environments HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            with process.http2_client() as client:  # the request above is in the app by now
                assert client.get(HEALTH).status_code == 200
            code, seconds = _stop_timed(process, signal.SIGTERM)
    assert code == 0
    assert seconds < 2.0
    assert "Traceback" not in process.stderr


STUCK_APP = """
import asyncio, sys
from pathlib import Path
from octo_appliance.config import load_config
from octo_appliance.web.server import bind_listener, install_shutdown_trigger, run_server, serve
from octo_appliance.certificate import load_or_create_certificate
from octo_appliance.vault.keys import KeyRing, MasterKey

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    print("in app", flush=True)
    while True:  # a request that ignores cancellation, like a call stuck in a worker thread
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass

async def main():
    config = load_config({"data_dir": sys.argv[1]}, environ={})
    cert = load_or_create_certificate(config, KeyRing(MasterKey.generate()))
    listener = bind_listener("127.0.0.1", 0, http3=True)
    trigger = install_shutdown_trigger()
    print(f"port {listener.port}", flush=True)
    await serve(app, listener, cert, grace_seconds=1, log_level="info", shutdown_trigger=trigger)

run_server(main())
"""


def test_a_request_that_ignores_cancellation_cannot_hold_up_stop(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_APP)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        context = ssl.create_default_context(cafile=str(tmp_path / "tls.crt"))
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert process.stdout.readline().strip() == "in app"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
            seconds = time.monotonic() - started
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert code == 0
    assert seconds < 2.0
    assert "exiting now" in stderr


def _stop_timed(process: ServeProcess, sig: int) -> tuple[int, float]:
    started = time.monotonic()
    code = process.stop(sig)
    return code, time.monotonic() - started


def test_serves_the_operator_certificate(server: ServeProcess, tmp_path: Path) -> None:
    source = load_or_create_certificate(
        load_config({"data_dir": str(tmp_path)}, environ={}), KeyRing(MasterKey.generate())
    )
    key_file = tmp_path / "operator.key"
    key_file.write_bytes(source.private_key_pem())
    key_file.chmod(0o600)
    extra = ["--tls-cert", str(source.cert_file), "--tls-key", str(key_file)]
    with ServeProcess(tmp_path / "data", extra_args=extra) as process:
        assert process.banner.thumbprint == source.thumbprint_sha256_hex
        assert process.cert_file == source.cert_file
        assert not (tmp_path / "data" / "tls.key").exists()
        with process.http2_client() as client:
            assert client.get(HEALTH).status_code == 200
        status, _, _ = asyncio.run(
            asyncio.wait_for(
                h3_get(process.host, process.port, HEALTH, cafile=source.cert_file), H3_TIMEOUT
            )
        )
        assert status == 200


def test_bad_listen_value_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--listen", "nonsense")
    assert result.returncode == 2
    assert "error: --listen: 'nonsense' is not HOST:PORT" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_tcp_port_in_use_is_a_clear_error_and_initialises_nothing(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli(
            "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"
        )
    assert result.returncode == 1
    assert f"tcp 127.0.0.1:{port}: the address is already in use" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "password" not in result.stdout
    assert not (tmp_path / "d").exists()  # no data dir, no key


def test_udp_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = run_cli(
            "serve", "--data-dir", str(tmp_path / "d"), "--listen", f"127.0.0.1:{port}"
        )
    assert result.returncode == 1
    assert f"udp 127.0.0.1:{port}: the address is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    keep_key_beside(tmp_path / "d")  # the key is made before the database is tried
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed_port = probe.getsockname()[1]
    result = run_cli(
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--listen",
        "127.0.0.1:0",
        "--database",
        f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port}/octo",
    )
    assert result.returncode == 1
    assert "error: cannot open the database" in result.stderr
    assert "hint:" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.postgres
def test_serves_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    reset_pg_schema(pg_url)
    with ServeProcess(tmp_path / "data", database=pg_url) as process:
        assert process.banner.database == f"PostgreSQL {pg_url}"
        assert process.banner.admin_password
        with process.http2_client() as client:
            assert client.get(HEALTH).status_code == 200
        assert process.stop() == 0
