"""Fixtures of the several-node tests: a throwaway PostgreSQL database per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ha.cluster import throwaway_database


@pytest.fixture(scope="module")
def ha_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url
