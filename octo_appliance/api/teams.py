"""Placeholder module, filled in by its resource's implementation."""

from __future__ import annotations

from octo_appliance.api.routing import Router

router = Router("teams")
