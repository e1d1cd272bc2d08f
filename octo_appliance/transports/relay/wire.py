"""What crosses PostgreSQL for a relayed call: sealed JSON, and errors as the caller sees them.

Every body is sealed by the master key the nodes share, bound to its call, kind and place
(a row copied to another call or position does not open): a call's parameters carry
sensitive variables and its events the runner's output, neither of which may rest in the
database in the clear. An error raised on the agent's node is rebuilt on the caller's node as
the same comms exception, so a relayed call fails exactly as a local one would.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from octo_appliance.comms.errors import (
    CallFailed,
    CallTimeout,
    CommsError,
    ConnectionClosed,
    PeerLost,
    PickupTimeout,
    TransferError,
)
from octo_appliance.exceptions import OctoError

#: the notification channels: relay traffic, and "a task's log grew" (payload: task id)
CHANNEL = "octo_relay"
LOG_CHANNEL = "octo_task_log"
#: a node whose heartbeat is older than this no longer holds its agents' connections
STALE_SECONDS = 15.0
#: the database's clock, in UTC (every relay time is compared on the database, never here)
NOW = "(now() AT TIME ZONE 'UTC')"


class Sealer(Protocol):
    def seal(self, plaintext: str, aad: bytes) -> str: ...

    def open(self, token: str, aad: bytes) -> str: ...


def seal(vault: Sealer, call_id: str, place: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return vault.seal(text, f"relay/{call_id}/{place}".encode())


def unseal(vault: Sealer, call_id: str, place: str, token: str) -> Any:
    return json.loads(vault.open(token, f"relay/{call_id}/{place}".encode()))


class NotPickedUp(CommsError):
    """The agent's node went away before it took the call: route it again."""


_KINDS: dict[str, type[CommsError]] = {
    "CallTimeout": CallTimeout,
    "PickupTimeout": PickupTimeout,
    "TransferError": TransferError,
    "ConnectionClosed": ConnectionClosed,
    "PeerLost": PeerLost,
}


def error_json(exc: BaseException) -> dict[str, Any]:
    """An exception raised on the agent's node, as the caller's node rebuilds it."""
    if isinstance(exc, OctoError):
        code = exc.code if isinstance(exc, CallFailed) else ""
        return {"type": type(exc).__name__, "code": code, "message": exc.message, "hint": exc.hint}
    return {
        "type": "CallFailed",
        "code": "relay_failed",
        "message": f"the node holding the agent's connection failed the call: {type(exc).__name__}",
        "hint": "see that node's log",
    }


def error_from(body: dict[str, Any]) -> CommsError:
    message = str(body.get("message") or "the relayed call failed")
    hint = body.get("hint") if isinstance(body.get("hint"), str) else None
    kind = _KINDS.get(str(body.get("type")))
    if kind is not None:
        return kind(message, hint=hint)
    return CallFailed(str(body.get("code") or "relay_failed"), message, hint=hint)
