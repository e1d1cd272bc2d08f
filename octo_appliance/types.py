"""Type aliases shared across the package, so signatures stay short and consistent, and the
one credential format both the agent and the server must agree on."""

from __future__ import annotations

from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, Any]
#: A resource id as the API shows it, e.g. ``env_3f9a1c2b7d4e``.
ResourceId: TypeAlias = str
#: Associated data bound into an encrypted value: ``b"table/row-id/column"``.
AssociatedData: TypeAlias = bytes

#: what every registration token starts with (``security.passwords`` makes them, the agent's
#: command line and the API's authentication tell them from API keys by it)
REGISTRATION_TOKEN_PREFIX = "OCTOREG-"
