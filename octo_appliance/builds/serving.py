"""Which octo-agent build this appliance serves for a platform, made ready in the background.

A frozen appliance answers at once with the build it embeds. A development install looks in
its build cache (:func:`octo_appliance.builds.agent.cached_build`) and, when today's sources
have no build yet, starts one in a background thread and says "not yet" until it is done: a
build takes minutes, far longer than a request should hold a worker thread. A failed build is
reported for :data:`RETRY_AFTER_FAILURE` seconds before a request may start another, so a
broken build does not run PyInstaller in a loop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from octo_appliance.builds.agent import (
    LINUX_X86_64,
    AgentBuild,
    BuildError,
    bundled_build,
    cached_build,
    find_cached,
)
from octo_appliance.builds.agent import frozen as appliance_frozen

RETRY_AFTER_FAILURE = 300.0

log = logging.getLogger("octo_appliance.builds")


@dataclass
class AgentBuilds:
    """The agent builds of one appliance process."""

    cache_dir: Path
    build_on_request: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: AgentBuild | None = None
    _thread: threading.Thread | None = None
    _failure: tuple[float, BuildError] | None = None

    def get(self, platform_name: str = LINUX_X86_64) -> AgentBuild | None:
        """The build for ``platform_name``; None while it is being made (this call may have
        started it). :class:`BuildError` when there is none and none will come by waiting."""
        if appliance_frozen():
            found = bundled_build(platform_name)
            if found is None:
                raise BuildError(
                    f"this octo-appliance executable carries no octo-agent for {platform_name}",
                    hint="use an octo-appliance executable built by build/build_appliance.sh",
                )
            return found
        with self._lock:
            if self._ready is not None and self._ready.path.is_file():
                return self._ready
            if self._thread is not None and self._thread.is_alive():
                return None
            self._ready = find_cached(self.cache_dir)
            if self._ready is not None:
                return self._ready
            self._raise_recent_failure()
            if not self.build_on_request:
                raise BuildError(
                    f"no octo-agent build of these sources in {self.cache_dir}",
                    hint="run build/build_agent.sh, or turn agent_build_on_request on",
                )
            self._thread = threading.Thread(
                target=self._build, name="octo-agent-build", daemon=True
            )
            self._thread.start()
            return None

    def _raise_recent_failure(self) -> None:
        if self._failure is None:
            return
        when, error = self._failure
        if time.monotonic() - when < RETRY_AFTER_FAILURE:
            raise error
        self._failure = None

    def _build(self) -> None:
        log.info("building octo-agent into %s (first request of these sources)", self.cache_dir)
        try:
            built = cached_build(self.cache_dir)
        except BuildError as exc:
            log.error("the octo-agent build failed: %s", exc.message)
            with self._lock:
                self._failure = (time.monotonic(), exc)
            return
        except Exception as exc:  # a bug must not kill silently: report it like a failure
            log.exception("the octo-agent build failed")
            with self._lock:
                self._failure = (time.monotonic(), BuildError(f"the build failed: {exc}"))
            return
        log.info(
            "octo-agent %s built: %s bytes, sha256 %s", built.version, built.size, built.sha256
        )
        with self._lock:
            self._ready = built
