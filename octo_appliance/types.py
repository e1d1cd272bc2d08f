"""Type aliases shared across the package, so signatures stay short and consistent."""

from __future__ import annotations

from typing import Any, TypeAlias

JSON: TypeAlias = dict[str, Any] | list[Any] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, Any]
#: A resource id as the API shows it, e.g. ``env_3f9a1c2b7d4e``.
ResourceId: TypeAlias = str
#: Associated data bound into an encrypted value: ``b"table/row-id/column"``.
AssociatedData: TypeAlias = bytes
