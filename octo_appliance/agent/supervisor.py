"""``octo-agent run --supervise``: keep one agent running, and try a new build safely.

The supervisor is the process systemd (or the bootstrap's pid file) knows. It is the
installed executable and stays small and stable: it never runs deployment work and never
replaces itself; it reads ``H/builds/state.json`` (:mod:`octo_appliance.agent.builds`) and
runs the build named there as its child (``BUILD run --home H``), forwarding SIGTERM/SIGINT.

- The agent exits with :data:`~octo_appliance.agent.builds.RESTART_FOR_UPDATE` after it
  staged a verified build: the supervisor starts the trial build.
- The trial must confirm (the appliance saw it connect and said so, and the agent wrote that
  into the state) within the bound the appliance gave; if it exits first or the time passes,
  the supervisor stops it, records ``failed`` with the reason, deletes the staged file and
  starts the previous build again. The previous build reports the failure at its next connect.
- A supervisor that starts and finds a trial left over (it was killed mid-trial, the machine
  rebooted) counts that trial as failed: an unconfirmed build is never kept.
- Any other exit but 0 is a crash: restarted after a back-off (1 s doubling to 30 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from octo_appliance.agent.builds import RESTART_FOR_UPDATE, SUPERVISED_ENV, Builds
from octo_appliance.agent.home import Home
from octo_appliance.agent.interpreter import program_path
from octo_appliance.agent.version import LAUNCHER_VERSION_ENV

log = logging.getLogger("octo_appliance.agent.supervisor")

STOP_GRACE = 30.0
#: an agent that exits this soon after the supervisor's first start could not start at all
FIRST_START_SECONDS = 15.0
CRASH_BACKOFF = (1.0, 30.0)
_PR_SET_PDEATHSIG = 1


def agent_command() -> list[str]:
    """How to start this very agent again: the frozen binary, the console script, or -m."""
    if getattr(sys, "frozen", False):
        return [program_path()]  # the one-file executable, not a copy its launcher unpacked
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    if argv0 == "octo-agent" and os.path.exists(sys.argv[0]):
        return [os.path.realpath(sys.argv[0])]
    return [sys.executable, "-m", "octo_appliance.agent"]


class Supervisor:
    def __init__(self, home: Home, run_args: Sequence[str]) -> None:
        self.home = home
        self.builds = Builds(home.builds_dir)
        self.run_args = list(run_args)
        self.installed = agent_command()
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        if self.builds.read().trial is not None:
            self._fail("the agent restarted before the new build confirmed")
        backoff = CRASH_BACKOFF[0]
        first = True
        while True:
            state = self.builds.read()
            trial = state.trial
            began = time.monotonic()
            code = self._run_child(trial or state.current, trial)
            if self.stopping:
                return code
            if code == RESTART_FOR_UPDATE:
                backoff = CRASH_BACKOFF[0]
                first = False
                continue
            if code == 0:
                return 0
            if first and trial is None and time.monotonic() - began < FIRST_START_SECONDS:
                # it could not start at all (a port in use, a broken home): starting it again
                # would fail the same way; say so by exiting (a service manager may restart)
                log.error("the agent could not start (exit code %s); not restarting it", code)
                return code
            first = False
            log.warning("the agent exited with %s; starting it again in %g s", code, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, CRASH_BACKOFF[1])

    def _run_child(self, entry: dict[str, Any] | None, trial: dict[str, Any] | None) -> int:
        command = list(entry["command"]) if entry else self.installed
        env = dict(os.environ, **{SUPERVISED_ENV: "1"})
        if entry is not None:
            env.pop(LAUNCHER_VERSION_ENV, None)  # a staged build stamps its own version
        log.info("starting %s build %s", "trial" if trial else "the", _version(entry))
        try:
            self.child = subprocess.Popen(
                [*command, "run", "--home", str(self.home.root), *self.run_args],
                env=env,
                preexec_fn=_die_with_parent,  # the supervisor is single-threaded
            )
        except OSError as exc:
            if trial is None:
                raise
            self._fail(f"the new build could not be started: {exc.strerror or exc}")
            return RESTART_FOR_UPDATE
        if trial is None:
            return self._wait()
        return self._watch_trial(trial)

    def _watch_trial(self, trial: dict[str, Any]) -> int:
        """Until the trial confirms (then: supervise it as usual), exits or runs out of time."""
        assert self.child is not None
        bound = float(trial.get("confirm_seconds") or 60)
        deadline = time.monotonic() + bound
        while not self.stopping:
            code = self.child.poll()
            if self.builds.read().trial is None:
                log.info("build %s confirmed", trial.get("version"))
                return self._wait()
            if code is not None:
                self._fail(f"the new build exited with code {code} before it confirmed")
                return RESTART_FOR_UPDATE
            if time.monotonic() > deadline:
                self._stop_child()
                self._fail(f"the new build did not connect and confirm within {bound:g} s")
                return RESTART_FOR_UPDATE
            time.sleep(0.1)
        return self._wait()

    def _fail(self, reason: str) -> None:
        failed = self.builds.roll_back(reason)
        if failed is not None:
            log.error("build %s rolled back: %s", failed.get("version"), reason)

    def _wait(self) -> int:
        assert self.child is not None
        return self.child.wait()

    def _stop_child(self) -> None:
        assert self.child is not None
        if self.child.poll() is not None:
            return
        self.child.terminate()
        try:
            self.child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def _version(entry: dict[str, Any] | None) -> str:
    return str(entry.get("version")) if entry else "installed with this supervisor"


def _die_with_parent() -> None:
    """The agent goes when its supervisor is killed outright (no orphan holding the port)."""
    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(home: Home, run_args: Sequence[str]) -> int:
    home.require_registered()
    home.ensure()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s supervisor: %(message)s"
    )
    return Supervisor(home, run_args).run()
