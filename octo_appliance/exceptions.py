"""One exception root for everything the appliance raises on purpose.

Every deliberate exception class of the package is in this tree, under the class it derives
from, with the module that defines it when that is not this one (``tests/unit/test_exceptions.py``
fails when a class is missing or placed under the wrong parent). API-facing classes carry the
HTTP status and a stable ``code``; ``api/errors.py`` turns each failure into its response::

    OctoError                       root: every deliberate failure (API: 500 with the message)
    ├── ConfigError                 a setting is missing or malformed (CLI exit 2)
    ├── VaultError                  the master key is missing, wrong, or a value does not decrypt
    ├── PluginError                 a plugin is malformed, misspelt a hook, or reused a name
    ├── DatabaseError               the database cannot be opened or migrated
    │   └── DatabaseUnavailable     the connection was lost or the server does not answer (for
    │                               now: the appliance reconnects by itself; API: 503 with
    │                               Retry-After)
    ├── InUseError                  a server (or a rotation, a restore) already uses the data
    ├── RunnerCompileError          builds.bytecode: the runner's modules do not compile
    ├── BuildError                  builds.agent: the agent executable cannot be built or found
    ├── ManifestError               builds.manifest: a build manifest is malformed or its
    │                               signature does not verify
    ├── DeltaError                  feed/delta: a package delta cannot be applied
    ├── StepFailed                  steps/base: a step type failed the step
    ├── TaskFailed                  engine/tasks/kinds: a task handler failed the task
    ├── VariableProblem             engine/variables: a property cannot be substituted
    ├── PinProblem                  engine/release_packages: a package pin does not resolve
    ├── SpecError                   engine/deployments/spec: a snapshot cannot be read
    ├── PlanError                   engine/deployments/plan: options that do not fit the release
    ├── WorkerUnavailable           transports/worker_account: the built-in worker is disabled
    ├── SettingError                transports/ssh/settings: an SSH target setting is malformed
    ├── TargetSettingsInvalid       plugin_api/target_settings: a transport refused settings
    ├── UpdateFailed                engine/agent_updates: an agent's self-update did not succeed
    ├── CommsError                  comms/errors: agent communication failed
    │   ├── IdentityError           a certificate or key cannot be used
    │   ├── ConnectFailed           the TCP connection could not be opened
    │   ├── HandshakeError          TLS or HELLO did not complete
    │   │   ├── PeerNotTrusted      the peer's certificate is not trusted
    │   │   ├── PeerRejected        the peer does not trust this side
    │   │   └── VersionMismatch     no common protocol version
    │   ├── ProtocolError           the peer broke the wire format
    │   │   └── MessageTooLarge     a JSON message does not fit in one frame
    │   ├── PeerLost                the connection died with the call in flight
    │   │   └── ConnectionClosed    closed before the request was written: safe to retry
    │   ├── CallFailed              the handler failed the call (with a code)
    │   ├── CallTimeout             the call did not finish within its timeout
    │   ├── TransferError           a file transfer was cut off or did not verify
    │   ├── PickupTimeout           a polling agent did not collect the request in time
    │   ├── NotPickedUp             transports/relay: the agent's node went before taking it
    │   └── _PeerError              comms/connection: the peer sent ERROR and closes (internal)
    ├── AgentError                  agent/errors: the agent cannot do what was asked
    │   ├── ForkServerGone          agent/forkserver: start runners directly (also an OSError)
    │   └── RegistrationError       agent/errors: registering with the appliance failed
    │       └── _NotFound           agent/registration: no such target (internal)
    ├── ClientError                 cli/client: a CLI call to the appliance failed (exit 1)
    │   └── ApiRefused              the appliance answered with an error status
    ├── KeepProblem                 cli/variable_file: a {"keep": true} with no stored value to keep
    ├── UploadInterrupted           cli/upload: an upload's file or connection failed (the CLI
    │   │                           turns each into a ClientError with a hint)
    │   ├── FileChanged             the file ended before its size at the start
    │   ├── UploadStalled           the server took no more of the body
    │   ├── NoAnswer                the body was sent, no answer came
    │   └── ClosedEarly             the server closed before answering (a refusal)
    └── ApiError                    turned into ``{"error": {code, message, details}}``
        ├── BadRequest          400 malformed JSON, bad query parameters
        ├── Unauthenticated     401 no or bad credentials
        ├── Forbidden           403 authenticated but not allowed
        ├── NotFound            404 no such resource (or route)
        ├── MethodNotAllowed    405
        ├── Conflict            409 duplicate names, resources still in use
        ├── PayloadTooLarge     413 body over the configured limit
        ├── ValidationFailed    422 well-formed JSON that breaks the schema or a rule
        ├── TooManyRequests     429 throttled (sign-in failures); carries Retry-After
        ├── HeaderSectionTooLarge  431 (header_limit) request headers over the limit
        ├── ServiceUnavailable  503 the database is unavailable; ``Retry-After`` says when to retry
        ├── EngineUnavailable   503 (api/tasks) this node runs no task engine
        └── InsufficientStorage 507 the disk of the data dir (or the database's) is full

The runner (``runner/octo_runner``) stays outside the tree on purpose: it is stdlib-only and
runs on targets without the appliance, so it must not import ``octo_appliance``. Its own root
is ``RunnerError`` (``runner/octo_runner/errors.py``); the appliance sees a runner failure as
the runner's result, never as a raised runner exception.

Every error carries a ``hint``: what the person who sees it should do next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OctoError(Exception):
    """Root of every deliberate failure; ``hint`` says what to do next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(OctoError):
    """A setting is missing or malformed."""


def exit_status(command: Callable[[], int], report: Callable[[OctoError], None]) -> int:
    """What a command line (``octo-appliance``, ``octo-agent``) exits with: ``command()``'s
    status; an error raised on purpose is reported (``report``: its message and hint) and
    exits 2 for a setting (:class:`ConfigError`), 1 for any other; Ctrl-C exits 130."""
    try:
        return command()
    except OctoError as exc:
        report(exc)
        return 2 if isinstance(exc, ConfigError) else 1
    except KeyboardInterrupt:
        return 130


class VaultError(OctoError):
    """The master key is missing or wrong, or a stored value does not decrypt."""


class PluginError(OctoError):
    """A plugin is malformed, misspelt a hook, or registered a name twice."""


class DatabaseError(OctoError):
    """The database cannot be reached, opened or migrated."""


class DatabaseUnavailable(DatabaseError):
    """The connection to the database was lost, or the server does not answer.

    Transient by nature: the next unit of work opens a new connection. ``outcome_unknown`` is
    True when a write was under way (a commit, or a statement outside a transaction) as the
    connection went, so it may or may not have been stored: check before doing it again.
    """

    def __init__(self, message: str, *, hint: str | None = None, outcome_unknown: bool = False):
        super().__init__(message, hint=hint)
        self.outcome_unknown = outcome_unknown


class InUseError(OctoError):
    """Another process holds the data dir or database (``octo_appliance.db.in_use``)."""


class ApiError(OctoError):
    """An error the REST API turns into its one JSON error shape."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        body["details"] = self.details if self.details is not None else []
        if self.hint:
            body["hint"] = self.hint
        return {"error": body}

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` on 429 and 503)."""
        return {}


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(ApiError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "method_not_allowed"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(ApiError):
    status_code = 422
    code = "validation_failed"


class TooManyRequests(ApiError):
    """Throttled: the answer carries ``Retry-After`` (whole seconds)."""

    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(ApiError):
    """503: a part the request needs (the database) is unavailable for now."""

    status_code = 503
    code = "service_unavailable"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int,
        details: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, details=details, hint=hint)
        #: seconds, sent as the ``Retry-After`` header
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InsufficientStorage(ApiError):
    """The write needs disk space the appliance does not have; freeing space is the cure, so
    it is a 507 (the request itself was fine), not a 500."""

    status_code = 507
    code = "insufficient_storage"
