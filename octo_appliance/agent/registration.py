"""``register`` and ``deregister``: the agent's only use of the appliance's HTTPS API.

The API key is sent only to the pinned appliance. First a bare TLS handshake (verification
off, nothing sent) fetches the certificate the server presents, and its SHA-256 thumbprint is
compared with ``--server-thumbprint``; then the request goes over an httpx client whose SSL
context trusts exactly that certificate (hostname not checked: the pin is the identity), so a
server swapped between the two connections fails the handshake instead of receiving the key.
The pinning itself lives in :mod:`octo_appliance.appliance_client.pinned_http` (the
``octo-appliance`` client commands use it too).

Nothing is written to the home before the appliance answered with success, so a failure
leaves no half registration behind.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from octo_appliance.agent.errors import RegistrationError
from octo_appliance.agent.home import (
    DEFAULT_POLLING_PORT,
    WILDCARD_HOSTS,
    AgentConfig,
    Home,
    Mode,
    format_address,
    parse_address,
    parse_addresses,
)
from octo_appliance.agent.version import AGENT_VERSION, running_version
from octo_appliance.appliance_client import pinned_http
from octo_appliance.appliance_client.api_key_input import is_registration_token
from octo_appliance.appliance_client.pinned_http import PinnedServer, pinned_ssl_context
from octo_appliance.builds.manifest import ManifestError, load_public_key
from octo_appliance.comms import Identity, normalize_thumbprint, thumbprint_of_pem
from octo_appliance.comms.errors import IdentityError
from octo_appliance.exceptions import ConfigError

REGISTER_PATH = "/api/v1/targets/register"
TARGET_PATH = "/api/v1/targets/{id}"
DEREGISTER_PATH = "/api/v1/targets/{id}/deregister"
STATUS_PATH = "/api/v1/targets/{id}/registration"
TIMEOUT = 30.0


#: the appliance's HTTPS API as pinned (see :mod:`octo_appliance.appliance_client.pinned_http`)
Server = PinnedServer


def pin_server(url: str, expected_thumbprint: str, *, timeout: float = TIMEOUT) -> Server:
    """Fetch the certificate the server presents and check it against the pin."""
    return pinned_http.pin_server(
        url, expected_thumbprint, timeout=timeout, error=RegistrationError
    )


def pinned_client(server: Server, api_key: str, *, timeout: float = TIMEOUT) -> httpx.Client:
    """An httpx client that trusts only the pinned certificate and sends the API key."""
    return httpx.Client(
        base_url=server.url,
        verify=pinned_ssl_context(server),
        timeout=timeout,
        headers={"X-Api-Key": api_key, "User-Agent": f"octo-agent/{AGENT_VERSION}"},
    )


@dataclass(frozen=True)
class RegisterRequest:
    name: str
    environments: list[str]
    roles: list[str]
    mode: Mode
    listen: str = ""
    public_host: str = ""
    polling_address: str = ""

    def body(self, identity: Identity) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "environments": self.environments,
            "roles": self.roles,
            "communication_style": self.mode,
            "thumbprint": identity.thumbprint,
            "certificate": identity.cert_pem.decode("ascii"),
            "agent_version": running_version(),
        }
        if self.mode == "listening":
            body["uri"] = self.uri()
        return body

    def uri(self) -> str:
        """Where the appliance dials a listening agent."""
        _, port = parse_address(self.listen, "--listen")
        return f"https://{format_address(self.public_host, port)}"


def check_request(request: RegisterRequest) -> None:
    """Refuse what would register a target the appliance cannot reach (before any I/O)."""
    if request.mode == "listening":
        _, port = parse_address(request.listen, "--listen")
        if port == 0:
            raise ConfigError(
                "--listen needs a fixed port: the appliance dials it",
                hint="e.g. --listen 0.0.0.0:10933",
            )
        if not request.public_host or request.public_host in WILDCARD_HOSTS:
            raise ConfigError(
                f"--listen {request.listen} binds every address, so it does not say which one "
                "the appliance should dial",
                hint="add --public-host NAME (the host name or IP the appliance reaches this "
                "machine by)",
            )
    elif request.polling_address:
        parse_addresses(request.polling_address, "--polling-address")


def register(
    home: Home, server: Server, api_key: str, request: RegisterRequest, *, force: bool = False
) -> AgentConfig:
    """Register this agent; writes agent.json only after the appliance said yes."""
    existing = home.load_config()
    if existing is not None and existing.is_registered and not force:
        raise RegistrationError(
            f"{home.root} is already registered as target {existing.target_id} "
            f"({existing.name!r}) with {existing.server_url}",
            hint="deregister it first, or pass --force to register again anyway",
        )
    identity = home.load_or_create_identity()
    with pinned_client(server, api_key) as client:
        response = _send(client, "POST", REGISTER_PATH, json=request.body(identity))
    data = _json_object(response, "the registration")
    target_id = data.get("id")
    if not isinstance(target_id, str) or not target_id:
        raise RegistrationError(
            "the appliance accepted the registration but sent no target id",
            hint="upgrade the appliance, or check its log",
        )
    comms_pem = data.get("server_certificate") or server.certificate_pem
    comms_thumbprint = data.get("server_thumbprint") or server.thumbprint
    try:
        if normalize_thumbprint(str(comms_thumbprint)) != thumbprint_of_pem(str(comms_pem)):
            raise ValueError
    except (ValueError, IdentityError):
        raise RegistrationError(
            f"the appliance registered target {target_id}, but its server_certificate and "
            "server_thumbprint do not match; nothing was stored",
            hint="report this appliance bug; delete the target in the portal and retry",
        ) from None
    signing_key = _signing_key(data, target_id)
    polling = ""
    if request.mode == "polling":
        polling = request.polling_address or str(data.get("polling_address") or "")
        if not polling:
            polling = format_address(server.host, DEFAULT_POLLING_PORT)
        parse_addresses(polling, "the polling address")
    config = AgentConfig(
        name=str(data.get("name") or request.name),
        mode=request.mode,
        listen=request.listen if request.mode == "listening" else "",
        public_host=request.public_host,
        polling_address=polling,
        server_url=server.url,
        api_thumbprint=server.thumbprint,
        api_certificate=server.certificate_pem,
        comms_thumbprint=normalize_thumbprint(str(comms_thumbprint)),
        comms_certificate=str(comms_pem),
        signing_public_key=signing_key,
        target_id=target_id,
        environments=list(request.environments),
        roles=list(request.roles),
        registered_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    home.save_config(config)
    return config


def _signing_key(data: dict[str, Any], target_id: str) -> str:
    """The appliance's build-signing public key from the answer ("" from an older appliance)."""
    text = data.get("signing_public_key")
    if text is None:
        return ""
    try:
        load_public_key(str(text))
    except ManifestError:
        raise RegistrationError(
            f"the appliance registered target {target_id}, but its signing_public_key is not "
            "an Ed25519 public key; nothing was stored",
            hint="report this appliance bug; delete the target in the portal and retry",
        ) from None
    return str(text)


def deregister(home: Home, api_key: str) -> tuple[AgentConfig, bool]:
    """Delete this agent's target on the appliance, then forget the registration.

    ``api_key`` may be a registration token (the install script's ``--uninstall``): the
    target is then named with this agent's thumbprint, which a token needs.
    Returns the old configuration and whether the appliance still knew the target.
    """
    config = home.require_registered()
    server = pin_server(config.server_url, config.api_thumbprint)
    known = True
    with pinned_client(server, api_key) as client:
        try:
            if is_registration_token(api_key):
                thumbprint = {"thumbprint": home.load_identity().thumbprint}
                path = DEREGISTER_PATH.format(id=config.target_id)
                _send(client, "POST", path, json=thumbprint)
            else:
                _send(client, "DELETE", TARGET_PATH.format(id=config.target_id))
        except _NotFound:
            known = False
    home.save_config(config.without_registration())
    return config, known


def health_status(home: Home, credential: str) -> str:
    """The health the appliance reports for this agent's target (``Unknown`` until checked)."""
    config = home.require_registered()
    server = pin_server(config.server_url, config.api_thumbprint)
    params = {"thumbprint": home.load_identity().thumbprint}
    with pinned_client(server, credential) as client:
        response = _send(client, "GET", STATUS_PATH.format(id=config.target_id), params=params)
    return str(_json_object(response, "the status request").get("health_status") or "Unknown")


#: what the health check may report, and which of it counts as up
HEALTHY = ("Healthy", "HealthyWithWarnings")
POLL_PAUSE = 0.25


def wait_healthy(
    home: Home, credential: str, *, timeout: float, alive: Callable[[], bool] | None = None
) -> str:
    """Ask until the target is healthy; a RegistrationError naming the last status when
    ``timeout`` seconds pass first (an Unhealthy target may recover, so it is asked again),
    or at once when ``alive`` says the agent's process is gone."""
    deadline = time.monotonic() + timeout
    while True:
        status = health_status(home, credential)
        if status in HEALTHY:
            return status
        if alive is not None and not alive():
            raise RegistrationError(
                f"the agent stopped before the appliance reported it healthy ({status})",
                hint="see the agent's log",
            )
        if time.monotonic() >= deadline:
            raise RegistrationError(
                f"the appliance still reports this target {status} after {timeout:g} s",
                hint="see the target's health-check task in the portal, and the agent's log",
            )
        time.sleep(POLL_PAUSE)


class _NotFound(RegistrationError):
    pass


def _send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise RegistrationError(
            f"{method} {path} on {client.base_url} failed: {exc}",
            hint="check that the appliance runs and is reachable, then retry",
        ) from None
    if response.is_success:
        return response
    status, message = response.status_code, _error_message(response)
    if status == 401 and is_registration_token(str(client.headers.get("X-Api-Key", ""))):
        raise RegistrationError(
            f"the appliance refused the registration token: {message}",
            hint="ask for a new install command (octo-appliance agent install-command)",
        )
    if status == 401:
        raise RegistrationError(
            f"the appliance refused the API key ({message})",
            hint="create an API key in the portal (or octo-appliance api-key create) and pass "
            "it with --api-key-file or OCTO_API_KEY",
        )
    if status == 403:
        raise RegistrationError(
            f"the API key may not do this: {message}",
            hint="use the key of a user allowed to manage targets in those environments",
        )
    if status == 409:
        raise RegistrationError(
            f"conflict: {message}",
            hint="choose another --name, or delete the existing target first",
        )
    if status == 422:
        raise RegistrationError(
            f"the appliance rejected the registration: {message}",
            hint="check --environment (it must exist on the appliance) and --role values",
        )
    if status == 404 and method in ("DELETE", "POST") and path != REGISTER_PATH:
        raise _NotFound(f"the appliance has no target {path.rsplit('/', 1)[-1]}")
    if status in (404, 405):
        raise RegistrationError(
            f"the appliance at {client.base_url} does not offer {method} {path} ({status})",
            hint="upgrade the appliance to a version that registers agents",
        )
    raise RegistrationError(
        f"the appliance answered {method} {path} with {status}: {message}",
        hint="retry later, or check the appliance's log",
    )


def _error_message(response: httpx.Response) -> str:
    """The message of the API's ``{"error": {...}}`` body, with details, else the status."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}"
    message = str(error.get("message") or response.reason_phrase)
    details = error.get("details")
    if isinstance(details, list) and details:
        parts = [_detail(d) for d in details[:5]]
        message += " (" + "; ".join(parts) + ")"
    return message


def _detail(detail: Any) -> str:
    if not isinstance(detail, dict):
        return str(detail)
    where = detail.get("field") or detail.get("loc")
    text = str(detail.get("message") or detail.get("msg") or detail)
    return f"{where}: {text}" if where else text


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise RegistrationError(
            f"the appliance answered {what} with something other than a JSON object",
            hint="check that --server points at an Octo appliance",
        )
    return data
