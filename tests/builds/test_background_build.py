"""A development install builds the agent in the background on the first request: "not yet"
until the build is there, then the build; a failure is reported, not retried in a loop.

The PyInstaller run itself is replaced here (it takes minutes; tests/binary builds the real
one): these tests are about when :class:`AgentBuilds` starts a build and what it answers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from octo_appliance.builds import serving
from octo_appliance.builds.agent import AgentBuild, BuildError, find_cached
from octo_appliance.builds.serving import AgentBuilds
from tests.builds.support import put_stand_in


def test_the_first_request_starts_one_build_and_later_ones_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    calls: list[Path] = []

    def slow_build(cache_dir: Path) -> AgentBuild:
        calls.append(cache_dir)
        release.wait(30)
        put_stand_in(cache_dir)
        found = find_cached(cache_dir)
        assert found is not None
        return found

    monkeypatch.setattr(serving, "cached_build", slow_build)
    builds = AgentBuilds(tmp_path / "cache")

    assert builds.get() is None  # started
    assert builds.get() is None  # still running: not a second build
    release.set()
    assert builds._thread is not None
    builds._thread.join(30)

    build = builds.get()
    assert build is not None and build.path.read_bytes().startswith(b"#!/bin/sh")
    assert calls == [tmp_path / "cache"]


def test_a_failed_build_is_reported_and_not_started_again_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken_build(cache_dir: Path) -> AgentBuild:
        calls.append(cache_dir)
        raise BuildError("PyInstaller failed to build octo-agent", hint="see the log")

    monkeypatch.setattr(serving, "cached_build", broken_build)
    builds = AgentBuilds(tmp_path / "cache")

    assert builds.get() is None
    assert builds._thread is not None
    builds._thread.join(30)
    for _ in range(2):
        with pytest.raises(BuildError, match="PyInstaller failed"):
            builds.get()
    assert len(calls) == 1

    monkeypatch.setattr(serving.time, "monotonic", lambda: 1e12)  # long after the failure
    assert builds.get() is None  # a new attempt
    builds._thread.join(30)
    assert len(calls) == 2
