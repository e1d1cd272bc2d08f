"""The runner command ``http-check``: request a URL until it answers with the expected
status (and body text), or the time or the attempts run out.

Arguments (checked by the step type on the appliance, again here): ``url``, ``method``
(GET or HEAD), ``expected_status``, ``expected_body`` (text the body must contain; "" for
any), ``timeout_seconds`` (the whole wait), ``interval_seconds`` (between attempts),
``request_timeout_seconds`` (one attempt), ``max_attempts`` (0: until the timeout),
``verify_tls``. Output variables: ``HttpStatus`` and ``HttpAttempts``.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

from octo_runner import plugin_api as api

COMMAND = "http-check"
#: how much of a body is read to look for the expected text
BODY_LIMIT = 1024 * 1024


def run(request: api.Request, events: api.Events, cancel: api.CancelToken) -> api.Outcome:
    args = api.arguments(request, COMMAND)
    url = args.string("url")
    if not url.startswith(("http://", "https://")):
        raise api.BadInputError(f"{COMMAND}: url must start with http:// or https://")
    method = args.string("method", default="GET", choices=("GET", "HEAD"))
    expected_status = int(args.number("expected_status", 200))
    expected_body = args.string("expected_body", default="")
    timeout = args.number("timeout_seconds", 60.0)
    interval = args.number("interval_seconds", 2.0)
    per_request = args.number("request_timeout_seconds", 10.0)
    max_attempts = int(args.number("max_attempts", 0))
    context = None if args.boolean("verify_tls", True) else _unverified()

    wanted = f"HTTP {expected_status}" + (f" with {expected_body!r}" if expected_body else "")
    events.log("info", f"waiting up to {timeout:g} s for {method} {url} to answer {wanted}")
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        remaining = max(0.1, deadline - time.monotonic())
        status, body, error = _ask(url, method, min(per_request, remaining), context)
        problem = error or _mismatch(status, body, expected_status, expected_body)
        if not problem:
            api.set_output(events, "HttpStatus", str(status))
            api.set_output(events, "HttpAttempts", str(attempt))
            message = f"{url} answered HTTP {status} after {attempt} attempt(s)"
            events.log("info", message)
            return api.Outcome(0, True, message)
        events.log("info", f"attempt {attempt}: {problem}")
        out_of_attempts = max_attempts and attempt >= max_attempts
        if out_of_attempts or time.monotonic() + interval >= deadline:
            why = f"{attempt} attempt(s)" if out_of_attempts else f"{timeout:g} s"
            return api.Outcome(
                1, False, f"{url} did not answer {wanted} within {why}; last: {problem}"
            )
        if api.wait(cancel, interval):
            return api.canceled(cancel)


def _ask(
    url: str, method: str, timeout: float, context: ssl.SSLContext | None
) -> tuple[int | None, str, str]:
    """(status, body text, "") or (None, "", why it failed)."""
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "octo-http-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return answer.status, _text(answer.read(BODY_LIMIT)), ""
    except urllib.error.HTTPError as exc:  # an answer all the same, with its status
        with exc:
            return exc.code, _text(exc.read(BODY_LIMIT)), ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, "", f"no answer ({reason})"


def _mismatch(status: int | None, body: str, expected_status: int, expected: str) -> str:
    if status != expected_status:
        return f"HTTP {status}, expected {expected_status}"
    if expected and expected not in body:
        return f"HTTP {status}, but the body does not contain {expected!r}"
    return ""


def _unverified() -> ssl.SSLContext:
    """For ``verify_tls: false``: a self-signed test endpoint (the step says so in its log)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")
