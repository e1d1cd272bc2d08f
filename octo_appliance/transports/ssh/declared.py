"""The ``ssh`` transport's per-target settings: declared like any transport's
(docs/plugins.md, "Per-target settings"), so the targets API validates, stores and publishes
them generically (``transport_settings`` of ``/api/v1/targets``, ``GET /api/v1/transports``).

The schema checks types and bounds; :func:`check` adds what it cannot say: host and user
shapes that can never become ssh options, a host-key fingerprint or trust on first use, one
credential (a key, with its passphrase if encrypted, or a password), a key that opens. It
sets the target's ``uri`` (``ssh://user@host:port``) and ``thumbprint`` (the pinned key, hex).
"""

from __future__ import annotations

import re
from typing import Any

from octo_appliance.plugin_api.properties import FieldProblem, Property
from octo_appliance.plugin_api.target_settings import (
    CheckedTargetSettings,
    TargetSettings,
    TargetSettingsInvalid,
)
from octo_appliance.plugin_api.transports import TargetAddress
from octo_appliance.transports.ssh.settings import (
    DEFAULT_DIRECTORY,
    DEFAULT_PORT,
    SettingError,
    check_private_key,
    openssh_fingerprint,
    parse_fingerprint,
    parse_ssh_uri,
    ssh_uri,
)

HOST_RE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$")
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,63}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SECRET_NAMES = ("private_key", "passphrase", "password")

TARGET_SETTINGS = (
    Property("host", "string", "Host name or IP address.", required=True, max_length=253),
    Property("port", "integer", "SSH port.", default=DEFAULT_PORT, minimum=1, maximum=65535),
    Property("user", "string", "The account to log in as (steps run as it).", required=True),
    Property(
        "host_key_fingerprint",
        "string",
        "The server's host key: SHA256:<base64> as `ssh-keygen -lf` prints it, or 64 hex "
        "digits. Required unless trust_on_first_use.",
        default="",
        max_length=100,
    ),
    Property(
        "trust_on_first_use",
        "boolean",
        "Pin the key the server presents at the first connection.",
        default=False,
    ),
    Property(
        "directory",
        "string",
        "Where the transport keeps runner, cache and work dirs (relative: to the home).",
        default=DEFAULT_DIRECTORY,
        max_length=500,
    ),
    Property(
        "private_key",
        "text",
        "OpenSSH or PEM private key (write-only).",
        secret=True,
        max_length=32000,
    ),
    Property("passphrase", "string", "The private key's passphrase (write-only).", secret=True),
    Property("password", "string", "Password login, instead of a key (write-only).", secret=True),
)


def check(given: TargetSettings) -> CheckedTargetSettings:
    """What the schema cannot check (see the module docstring); the values to store."""
    values = dict(given.values)
    problems = _shape_problems(values)
    fingerprint = ""
    try:
        if values["host_key_fingerprint"]:
            fingerprint = parse_fingerprint(values["host_key_fingerprint"])
            values["host_key_fingerprint"] = openssh_fingerprint(fingerprint)
        elif not values["trust_on_first_use"]:
            problems.append(
                FieldProblem(
                    "host_key_fingerprint",
                    "give the server's host-key fingerprint, or set trust_on_first_use to "
                    "record the key presented at the first connection",
                )
            )
        new_secrets = _credentials(given)
    except SettingError as exc:
        problems.append(FieldProblem(exc.field, exc.message))
        new_secrets = None
    if problems:
        raise TargetSettingsInvalid(problems)
    return CheckedTargetSettings(
        values,
        new_secrets,
        uri=ssh_uri(values["user"], values["host"], values["port"]),
        thumbprint=fingerprint,
    )


def _shape_problems(values: dict[str, Any]) -> list[FieldProblem]:
    problems = []
    if not HOST_RE.match(values["host"]):
        problems.append(FieldProblem("host", "must be a host name or an IP address"))
    if not USER_RE.match(values["user"]):
        problems.append(FieldProblem("user", "must be a user name (letters, digits, . _ -)"))
    if not values["directory"] or CONTROL_RE.search(values["directory"]):
        problems.append(FieldProblem("directory", "must be a path without control characters"))
    return problems


def _credentials(given: TargetSettings) -> dict[str, str] | None:
    """The new credentials; None to keep the stored ones (an update that gives none)."""
    secrets = given.secrets
    if secrets.get("private_key") and secrets.get("password"):
        raise SettingError("password", "give a private key or a password, not both")
    if secrets.get("passphrase") and not secrets.get("private_key"):
        raise SettingError("passphrase", "a passphrase goes with a private key")
    if not secrets.get("private_key") and not secrets.get("password"):
        if given.creating or not given.stored_secrets & {"private_key", "password"}:
            raise SettingError("private_key", "give a private key or a password")
        return None
    if secrets.get("private_key"):
        check_private_key(secrets["private_key"], secrets.get("passphrase", ""))
    return {name: secrets[name] for name in SECRET_NAMES if secrets.get(name)}


def shown(values: dict[str, Any], target: TargetAddress) -> dict[str, Any]:
    """The settings as answered: the fingerprint pinned now (trust on first use records it
    after the target was saved; null until then), the address from the ``uri`` for targets
    stored before the settings held it."""
    shown_values = dict(values)
    if "host" not in shown_values:
        try:
            user, host, port = parse_ssh_uri(target.uri)
        except SettingError:
            user, host, port = "", "", 0
        shown_values.update(user=user, host=host, port=port)
    shown_values.setdefault("trust_on_first_use", False)
    shown_values.setdefault("directory", DEFAULT_DIRECTORY)
    shown_values["host_key_fingerprint"] = openssh_fingerprint(target.thumbprint) or None
    return {p.name: shown_values[p.name] for p in TARGET_SETTINGS if p.name in shown_values}
