"""The runner command ``systemd-service``: install or update a unit, reload, restart, wait
until it is active, and put the previous unit back when it does not come up.

Arguments: ``unit_name`` (``app.service``), ``unit_file`` (absolute path of the new unit on
the target, usually in the package a ``deploy-package`` step installed), ``unit_dir``
(default ``/etc/systemd/system``), ``enable`` (default true), ``wait_seconds`` (how long the
unit may take to become active, default 30), ``settle_seconds`` (how long it must then stay
active, default 2), ``systemctl`` (the program, default ``systemctl`` on the PATH).

Steps: write the unit (atomically, 0644) unless it is unchanged, ``daemon-reload``,
``enable`` (when asked), ``restart``, then poll ``is-active`` until ``active`` (and still
active after ``settle_seconds``), ``failed`` or the time is up. When it does not come up:
the last lines of ``systemctl status`` go to the log, the previous unit file is written
back (or the new one removed when there was none), ``daemon-reload``, and the previous unit
is restarted and waited for; the step fails either way, saying what the unit is now.
Output variables: ``UnitName``, ``UnitChanged`` (True/False), ``UnitState``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from octo_runner import plugin_api as api

COMMAND = "systemd-service"
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|path|mount|target)$")
POLL_SECONDS = 0.5
CALL_TIMEOUT = 120.0
STATUS_LINES = 20


class Systemd:
    """``systemctl`` calls for one unit, each logged (verbose) with its output."""

    def __init__(self, program: str, unit: str, events: api.Events) -> None:
        self.program = program
        self.unit = unit
        self.events = events

    def call(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.program, *args]
        self.events.log("verbose", "systemctl " + " ".join(args))
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            raise api.RunnerError(f"systemctl {' '.join(args)} did not finish in time") from None
        if done.returncode != 0 and args[0] not in ("is-active", "status"):
            for line in (done.stdout + done.stderr).splitlines():
                self.events.log("warning", line)
        return done

    def state(self) -> str:
        return self.call("is-active", self.unit).stdout.strip() or "unknown"

    def wait_active(self, cancel: api.CancelToken, wait: float, settle: float) -> str:
        """``active`` once it is active and still is ``settle`` seconds later; else the
        state it ended in (``failed`` at once, anything else at the deadline)."""
        deadline = time.monotonic() + wait
        while True:
            state = self.state()
            if state == "active":
                if settle <= 0 or api.wait(cancel, settle):
                    return state
                state = self.state()
                if state == "active":
                    return state
            if state == "failed" or time.monotonic() >= deadline:
                return state
            if api.wait(cancel, POLL_SECONDS):
                return "canceled"

    def show_status(self) -> None:
        done = self.call("status", self.unit, "--no-pager", "--lines", str(STATUS_LINES))
        for line in (done.stdout + done.stderr).splitlines()[-STATUS_LINES:]:
            self.events.log("warning", line)


def run(request: api.Request, events: api.Events, cancel: api.CancelToken) -> api.Outcome:
    args = api.arguments(request, COMMAND)
    unit = args.string("unit_name")
    if not UNIT_NAME.match(unit):
        raise api.BadInputError(f"{COMMAND}: unit_name {unit!r} is not a systemd unit name")
    source = args.string("unit_file")
    if not os.path.isabs(source):
        raise api.BadInputError(f"{COMMAND}: unit_file must be an absolute path")
    unit_dir = args.string("unit_dir", default="/etc/systemd/system")
    wait = args.number("wait_seconds", 30.0)
    settle = args.number("settle_seconds", 2.0)
    program = args.string("systemctl", default="systemctl")
    found = shutil.which(program)
    if found is None:
        raise api.RunnerError(
            f"{program} is not on this target's PATH: systemd-service needs systemd",
            hint="run the step on targets that run systemd, or set the systemctl property",
        )
    new = _read(source)
    if new is None:
        raise api.RunnerError(f"the unit file {source} does not exist on this target")
    target = os.path.join(unit_dir, unit)
    previous = _read(target)
    changed = previous != new
    systemd = Systemd(found, unit, events)
    if changed:
        _write(target, new)
        events.log("info", f"{'updated' if previous is not None else 'installed'} {target}")
    else:
        events.log("info", f"{target} is unchanged")
    systemd.call("daemon-reload")
    if args.boolean("enable", True):
        systemd.call("enable", unit)
    systemd.call("restart", unit)
    state = systemd.wait_active(cancel, wait, settle)
    api.set_output(events, "UnitName", unit)
    api.set_output(events, "UnitChanged", str(changed))
    if state == "active":
        api.set_output(events, "UnitState", state)
        return api.Outcome(0, True, f"{unit} is active")
    events.log("error", f"{unit} did not become active: it is {state}")
    systemd.show_status()
    if not changed:
        api.set_output(events, "UnitState", state)
        return api.Outcome(1, False, f"{unit} is {state}; its unit file was unchanged")
    restored = _restore(systemd, target, previous, cancel, wait, settle)
    api.set_output(events, "UnitState", restored)
    if state == "canceled":
        return api.canceled(cancel)
    what = "the previous unit was restored" if previous is not None else "the new unit removed"
    return api.Outcome(1, False, f"{unit} did not become active ({state}); {what}: {restored}")


def _restore(
    systemd: Systemd,
    target: str,
    previous: bytes | None,
    cancel: api.CancelToken,
    wait: float,
    settle: float,
) -> str:
    """Put ``previous`` back (remove the unit when there was none); the unit's state after."""
    events = systemd.events
    if previous is None:
        os.unlink(target)
        events.log("warning", f"removed {target}: there was no previous unit")
        systemd.call("stop", systemd.unit)
        systemd.call("daemon-reload")
        return "removed"
    _write(target, previous)
    events.log("warning", f"restored the previous {target}")
    systemd.call("daemon-reload")
    systemd.call("restart", systemd.unit)
    return "previous unit " + systemd.wait_active(cancel, wait, settle)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def _write(path: str, data: bytes) -> None:
    """Replace ``path`` atomically (a unit is never half written), mode 0644."""
    folder = os.path.dirname(path)
    fd, partial = tempfile.mkstemp(prefix=".octo-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
