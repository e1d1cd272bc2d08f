"""The memory report (``OCTO_DEBUG_MEMORY``) is off by default and writes what it says."""

from __future__ import annotations

import collections
import signal
import tracemalloc
from pathlib import Path

import pytest

from octo_appliance.web import memory_report


async def test_without_the_variable_nothing_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory_report.VARIABLE, raising=False)
    before = signal.getsignal(signal.SIGUSR2)
    assert memory_report.install() is False
    assert signal.getsignal(signal.SIGUSR2) is before
    assert not tracemalloc.is_tracing()


def test_a_report_without_tracing_names_the_heaps_and_the_objects(tmp_path: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    report = tmp_path / "memory.txt"
    memory_report.write_report(report, counts, trace=False)
    text = report.read_text()
    assert text.startswith("=== memory report")
    assert "\nrss " in text and "gc objects by type" in text
    assert counts["dict"] > 0  # kept for the next report's changes
    assert not tracemalloc.is_tracing()
