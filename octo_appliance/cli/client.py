"""The REST API client of the ``octo-appliance`` commands that talk to a running server.

One :class:`ApiClient` per command run: httpx over TLS that trusts either exactly the
certificate pinned by ``--server-thumbprint`` (see
:mod:`octo_appliance.appliance_client.pinned_http`) or, without a pin, the CAs this machine
trusts. Every failure, of the connection or reported by the server, becomes a
:class:`ClientError` whose message says what went wrong and whose hint says what to do next;
httpx exceptions never reach the user. The API key only ever travels in the ``X-Api-Key``
header: it is scrubbed from every message this module builds, to be sure.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import h11
import httpx

from octo_appliance import __version__
from octo_appliance.appliance_client.pinned_http import (
    parse_server_url,
    pin_server,
    pinned_ssl_context,
)
from octo_appliance.cli import upload
from octo_appliance.cli.sse import parse_events
from octo_appliance.exceptions import OctoError

E = TypeVar("E", bound=BaseException)

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
#: the log stream sends a keepalive every 15 s; silence for this long means the link is dead
STREAM_READ_TIMEOUT = 60.0
#: reconnects of one log stream in a row before giving up (each resumes where it stopped)
STREAM_RETRIES = 5
#: the first pause before a reconnect; it doubles each time, up to 10 s
STREAM_RETRY_SECONDS = 1.0
#: after the last byte of an upload the appliance verifies and stores the whole package
UPLOAD_READ_TIMEOUT = 900.0
USER_AGENT = f"octo-appliance-cli/{__version__}"
KEY_HINT = (
    "check --api-key, --api-key-file or $OCTO_API_KEY; create a key in the portal or with "
    "'octo-appliance api-key create --user NAME' on the appliance host"
)

#: what to do after a refusal the appliance sent without a hint of its own (docs/cli.md
#: promises a hint line under every error)
DEFAULT_HINTS = {
    400: "correct the value the message names; the command's --help says what each option takes",
    409: "the appliance's current state does not allow this; look at it (the list and show "
    "commands) and retry once it does",
    422: "correct the value the message names (ids or names must match exactly); the "
    "command's --help says what each option takes",
    429: "wait a little, then retry",
}
DEFAULT_HINT = "check the appliance's log for more, then retry"


class ClientError(OctoError):
    """A call to the appliance failed: it could not be reached, or it refused (exit 1)."""


class ApiRefused(ClientError):
    """The appliance answered with an error status; ``code`` is the API's error code."""

    def __init__(
        self, message: str, *, hint: str | None, status: int, code: str, details: list[Any]
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Connection:
    """Where the appliance is and how to prove who we are; the key is never printed."""

    server: str
    api_key: str
    thumbprint: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # a dataclass repr would show the key
        return f"Connection(server={self.server!r}, thumbprint={self.thumbprint!r})"


@dataclass(frozen=True)
class LogLine:
    """One line of a task log as the API shows it (``seq``, ``time``, ``level``, ...)."""

    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.data.get("seq") or 0)


@dataclass(frozen=True)
class TaskEnd:
    """The log stream's ``end`` event: the task's final ``state``, ``error``, ``finished_at``."""

    data: dict[str, Any]

    @property
    def state(self) -> str:
        return str(self.data.get("state") or "")


class ApiClient:
    """Calls ``/api/v1`` on one appliance; paths given to it are relative to ``/api/v1``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.timeout = connection.timeout
        self._secret = connection.api_key
        if connection.thumbprint:
            pinned = pin_server(
                connection.server, connection.thumbprint, timeout=self.timeout, error=ClientError
            )
            self.url = pinned.url
            verify: ssl.SSLContext = pinned_ssl_context(pinned)
        else:
            self.url = parse_server_url(connection.server)[0]
            verify = ssl.create_default_context()  # the system's CAs ($SSL_CERT_FILE too)
        self.pinned = bool(connection.thumbprint)
        self._headers = [("X-Api-Key", connection.api_key), ("User-Agent", USER_AGENT)]
        _, host, port = parse_server_url(self.url)
        self._target = upload.Target(host, port, verify)
        # trust_env off: no proxy, no .netrc; the pin is checked on a direct connection anyway
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX,
            verify=verify,
            timeout=self.timeout,
            headers=dict(self._headers),
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plain calls ---------------------------------------------------------------------------

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, params=params)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; the parsed JSON of a success, else a :class:`ClientError`."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        return self._result(response, method, path)

    # -- the live log ----------------------------------------------------------------------------

    def follow_log(
        self,
        task_id: str,
        since: int = 0,
        *,
        on_retry: Callable[[str], None] | None = None,
    ) -> Iterator[LogLine | TaskEnd]:
        """The task's log lines after ``since`` as they are written, then its :class:`TaskEnd`.

        A dropped stream is resumed from the last line received (``Last-Event-ID``), up to
        :data:`STREAM_RETRIES` times in a row; ``on_retry`` hears why each time.
        """
        path = f"/tasks/{task_id}/log/stream"
        last, failures = since, 0
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if not response.is_success:
                        response.read()
                        self._result(response, "GET", path)
                    for event in parse_events(response.iter_lines()):
                        data = self._event_data(event.data)
                        if event.event == "log":
                            line = LogLine(data)
                            last, failures = max(last, line.seq), 0
                            yield line
                        elif event.event == "end":
                            yield TaskEnd(data)
                            return
                reason = "the log stream ended before the task did"
            except httpx.HTTPError as exc:
                error = self._transport_error(exc)
                if _cause(exc, ssl.SSLCertVerificationError) is not None:
                    raise error from None  # not a dropped link: retrying cannot help
                reason = error.message
            failures += 1
            if failures > STREAM_RETRIES:
                raise ClientError(
                    f"lost the log stream of task {task_id}: {reason}",
                    hint=f"the task goes on; follow it again with 'octo-appliance task log "
                    f"{task_id} --follow --since {last}'",
                )
            if on_retry is not None:
                on_retry(f"{reason}; reconnecting after line {last}")
            time.sleep(min(STREAM_RETRY_SECONDS * 2.0 ** (failures - 1), 10.0))

    def _event_data(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise ClientError(
                "the log stream sent an event that is not a JSON object",
                hint="check that --server points at an Octo appliance of this version",
            )
        return data

    # -- uploads -------------------------------------------------------------------------------

    def upload(
        self,
        path: str,
        file: Path,
        *,
        file_name: str,
        params: dict[str, Any] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Any:
        """POST ``file`` as the multipart field ``file``, streamed from disk in chunks.

        The body's length is known up front (Content-Length), so nothing is buffered; the
        server's answer is heard even when it comes before the body ends (see
        :mod:`octo_appliance.cli.upload`); a file that changes size while it is read fails the
        upload instead of sending a torn copy.
        """
        try:
            size = file.stat().st_size
            handle = file.open("rb")
        except OSError as exc:
            raise ClientError(
                f"cannot read {file}: {exc.strerror or exc}", hint="check the path"
            ) from None
        target = httpx.URL(self.url + API_PREFIX + path, params=params)
        url = target.raw_path.decode("ascii")
        with handle:
            form = upload.FileForm(handle, size, file_name, progress)
            headers = [*self._headers, *form.headers()]
            try:
                answer = upload.post_streamed(
                    self._target,
                    url,
                    headers,
                    form.body(),
                    connect_timeout=self.timeout,
                    stall_timeout=self.timeout,
                    answer_timeout=max(self.timeout, UPLOAD_READ_TIMEOUT),
                )
            except upload.FileChanged:
                raise ClientError(
                    f"{file} got shorter while it was uploaded; nothing was stored",
                    hint="push it again once nothing writes to it",
                ) from None
            except upload.UploadStalled as exc:
                raise ClientError(
                    f"the appliance at {self.url} took no more of the upload for "
                    f"{exc.seconds:g} s (after {exc.sent} of {form.length} bytes) and gave no "
                    "answer",
                    hint="retry; if the link is slow, raise --timeout",
                ) from None
            except upload.ClosedEarly as exc:
                raise ClientError(
                    f"the appliance at {self.url} closed the connection after {exc.sent} of "
                    f"{form.length} bytes of the upload, without an answer",
                    hint="it refused the upload before reading it: check that the API key may "
                    "push packages (package.push) and the appliance's max_package_mb, and that "
                    "the appliance has a package feed; its log says why",
                ) from None
            except upload.NoAnswer as exc:
                raise ClientError(
                    f"the appliance at {self.url} gave no answer to the upload: {exc}",
                    hint="check the appliance's log; the package list shows whether it arrived",
                ) from None
            except (OSError, ssl.SSLError, h11.ProtocolError) as exc:
                raise self._transport_error(exc) from None
        response = httpx.Response(answer.status, headers=answer.headers, content=answer.content)
        return self._result(response, "POST", path)

    # -- errors --------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "********") if self._secret else text

    def _transport_error(self, exc: BaseException) -> ClientError:
        """httpx's errors, and the socket, TLS and h11 errors of an upload, as messages."""
        where = self.url
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return ClientError(
                f"the appliance at {where} did not answer within {self.timeout:g} s",
                hint="retry; if the appliance is busy, raise --timeout",
            )
        verify = _cause(exc, ssl.SSLCertVerificationError)
        if verify is not None:
            reason = verify.verify_message or verify.reason or "not trusted"
            if self.pinned:
                return ClientError(
                    f"the appliance at {where} changed its certificate after it was pinned "
                    f"({reason}); the API key was not sent",
                    hint="retry; if it happens again, something else answers at that address",
                )
            return ClientError(
                f"the certificate of {where} is not trusted ({reason}); the API key was not sent",
                hint="pass --server-thumbprint (or set $OCTO_SERVER_THUMBPRINT) to the SHA-256 "
                "thumbprint the appliance prints at start, or give it a certificate from a CA "
                "this machine trusts",
            )
        if isinstance(exc, httpx.ConnectError | ConnectionRefusedError | socket.gaierror):
            reason = _reason(exc)
            return ClientError(
                f"cannot reach the appliance at {where}: {self._scrub(reason)}",
                hint="check the --server address (or $OCTO_SERVER), that the appliance runs, "
                "and the firewall",
            )
        return ClientError(
            f"the connection to {where} failed: {self._scrub(_reason(exc))}",
            hint="check that the appliance runs and is reachable, then retry",
        )

    def _result(self, response: httpx.Response, method: str, path: str) -> Any:
        if response.is_success:
            try:
                return response.json() if response.content else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ClientError(
                    f"{self.url} answered {method} {API_PREFIX}{path.partition('?')[0]} with "
                    "something other than JSON",
                    hint="check that --server points at an Octo appliance",
                ) from None
        raise self._refusal(response, method, path)

    def _refusal(self, response: httpx.Response, method: str, path: str) -> ApiRefused:
        status = response.status_code
        code, message, details, hint = _error_body(response)
        endpoint = f"{method} {API_PREFIX}{path.partition('?')[0]}"
        if status == 401:
            message = f"the appliance refused the API key ({message})"
            hint = KEY_HINT
        elif status == 403:
            message = f"not allowed: {message}"
            hint = hint or "ask an administrator for a team grant that allows it"
        elif status in (404, 405) and (message.startswith(("no such endpoint", f"{method} is"))):
            message = f"the appliance at {self.url} does not offer {endpoint}"
            hint = "upgrade the appliance to a version that has it"
        elif status == 404:
            hint = hint or "check the id or name (names must match exactly)"
        elif status == 413:
            hint = hint or "the appliance limits request sizes (setting max_body_bytes)"
        elif status >= 500:
            message = f"the appliance failed on {endpoint} ({status}): {message}"
            hint = hint or "retry later; the appliance's log says more"
        elif status not in (400, 409, 422):
            message = f"the appliance answered {endpoint} with {status}: {message}"
        hint = hint or DEFAULT_HINTS.get(status, DEFAULT_HINT)
        return ApiRefused(
            self._scrub(message),
            hint=self._scrub(hint),
            status=status,
            code=code,
            details=details,
        )


def _cause(exc: BaseException, kind: type[E]) -> E | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reason(exc: BaseException) -> str:
    """The innermost useful text of a transport error (e.g. ``Connection refused``)."""
    os_error = _cause(exc, OSError)
    if os_error is not None and os_error.strerror:
        return os_error.strerror
    return str(exc) or type(exc).__name__


def _error_body(response: httpx.Response) -> tuple[str, str, list[Any], str | None]:
    """(code, message with details, details, hint) from ``{"error": {...}}``, or the status."""
    fallback = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return "", fallback, [], None
    message = str(error.get("message") or fallback)
    raw = error.get("details")
    details: list[Any] = raw if isinstance(raw, list) else []
    extra = [_detail(d) for d in details[:5]]
    extra = [text for text in extra if text and text not in message]
    if extra:
        message += " (" + "; ".join(extra) + ")"
    hint = error.get("hint")
    return str(error.get("code") or ""), message, details, str(hint) if hint else None


def _detail(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    where = detail.get("field") or detail.get("loc")
    text = str(detail.get("message") or detail.get("msg") or "")
    return f"{where}: {text}" if where else text
