"""Test plugin: never imported, its dependency is missing (tests/plugin_fixtures/README.md)."""

from __future__ import annotations

import octo_no_such_dependency  # noqa: F401
