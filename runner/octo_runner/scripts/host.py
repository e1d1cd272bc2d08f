"""Run one script: start it, feed its inputs, stream its output live, stop it on cancel.

The script starts in a new session (its own process group), so a cancel reaches every
process it started: SIGTERM to the group, SIGKILL after the grace period, and on Linux the
runner (a child subreaper) reaps what is left before it reports the cancel. One reader
thread per output pipe puts lines on a bounded queue (:mod:`.pipes`: back-pressure down to
the script's pipe); only the calling thread writes events, so service messages and masking
apply in the order each pipe produced its lines (the relative order of a stdout and a stderr
line written at the same moment is not guaranteed). Every line the script wrote before it
exited is logged, also when a process it left running holds its pipes open.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..cancellation import CancelToken
from ..errors import RunnerError
from ..protocol import EventWriter
from .launch import Launch, prepare, script_input
from .output import OutputHandler
from .pipes import DRAIN_IDLE_SECONDS, DRAIN_MAX_SECONDS, Drain, Pump, line_queue

#: After SIGKILL, how long to wait for the process group to disappear before giving up.
KILL_WAIT_SECONDS = 5.0
CANCELED_EXIT_CODE = 143  # 128 + SIGTERM, whatever the script's own status was
_POSIX = os.name == "posix"
_HELD_OPEN = {
    Drain.IDLE: (
        "the script exited, but a process it started still holds its output open (nothing "
        f"written for {DRAIN_IDLE_SECONDS:g} s): the step goes on; what that process writes "
        "from now on is not logged (redirect the output of background processes)"
    ),
    Drain.STILL_WRITING: (
        "the script exited, but a process it started keeps writing to its output "
        f"({DRAIN_MAX_SECONDS:g} s after the exit): the step goes on; what that process "
        "writes from now on is not logged (redirect the output of background processes)"
    ),
}


@dataclass(frozen=True)
class ScriptJob:
    syntax: str
    body: str
    variables: Mapping[str, str]
    work_dir: str
    interpreter: str | None = None
    cancel_grace_seconds: float = 10.0
    #: where the helper folder goes (default ``work_dir``): outside a release folder, so a
    #: Deploy script that copies or archives ``.`` does not pick the helpers up
    helper_root: str | None = None
    #: the script's file name in ``work_dir``, which a shell script sees in ``$0``
    name: str = "script"


@dataclass(frozen=True)
class ScriptOutcome:
    exit_code: int
    canceled: bool
    cancel_reason: str
    result_message: str | None
    failed_by_message: bool

    @property
    def success(self) -> bool:
        return self.exit_code == 0 and not self.canceled and not self.failed_by_message


def run(job: ScriptJob, events: EventWriter, cancel: CancelToken) -> ScriptOutcome:
    """Run ``job`` to completion (or cancellation) and return how it ended."""
    if cancel.cancelled:
        return ScriptOutcome(CANCELED_EXIT_CODE, True, cancel.reason, None, False)
    launch = prepare(
        job.syntax,
        job.body,
        job.variables,
        job.helper_root or job.work_dir,
        job.interpreter,
        arg0=os.path.join(job.work_dir, job.name),
    )
    for name in launch.skipped_names:
        reason = "its name holds a tab or a line break"
        events.log("warning", f"variable {name!r} is not available to shell scripts: {reason}")
    try:
        return _Run(job, events, cancel).execute(launch)
    finally:
        shutil.rmtree(launch.helper_dir, ignore_errors=True)


class _Run:
    def __init__(self, job: ScriptJob, events: EventWriter, cancel: CancelToken) -> None:
        self.job = job
        self.events = events
        self.cancel = cancel
        self.output = OutputHandler(events, job.work_dir)
        self.lines = line_queue()
        self.proc: subprocess.Popen[bytes] | None = None
        self.term_sent_at: float | None = None
        self.killed = False

    def execute(self, launch: Launch) -> ScriptOutcome:
        argv, table, script = launch.argv, launch.table, launch.script
        table_r, table_w = script_input(table, "table" in launch.in_memory)
        script_r, script_w = script_input(script, "script" in launch.in_memory)
        env = dict(os.environ, OCTO_VARIABLES_FD=str(table_r), OCTO_SCRIPT_FD=str(script_r))
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.job.work_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(table_r, script_r),
                start_new_session=_POSIX,
            )
        except OSError as exc:
            for fd in (table_w, script_w):
                if fd is not None:
                    os.close(fd)
            raise RunnerError(f"could not start {argv[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(table_r)
            os.close(script_r)
        for fd, data in ((table_w, table), (script_w, script)):
            if fd is not None:
                _thread(_feed, fd, data)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        pumps = [Pump("stdout", self.proc.stdout, self.lines)]
        pumps.append(Pump("stderr", self.proc.stderr, self.lines))
        try:
            self._stream(pumps)
            returncode = self.proc.wait()
            if self.cancel.cancelled:
                self._finish_group()
        except BaseException:
            self._kill_now()
            self._wait_for_group(time.monotonic() + KILL_WAIT_SECONDS)
            raise
        finally:
            _reap_orphans()
        return self._outcome(returncode)

    def _stream(self, pumps: list[Pump]) -> None:
        """Log every line until both pipes end (or a background process holds them open)."""
        open_pumps = {pump.name: pump for pump in pumps}
        drain: Drain | None = None
        while open_pumps:
            if self.cancel.cancelled:
                self._stop_step()
            if drain is None and self.proc is not None and self.proc.poll() is not None:
                drain = Drain()
            try:
                item: tuple[str, list[bytes] | None] | None = self.lines.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is not None:
                stream, lines = item
                if lines is None:
                    del open_pumps[stream]
                else:
                    self._handle(stream, lines)
            if drain is not None and open_pumps:
                idle = item is None and self.lines.empty()
                why = drain.verdict(list(open_pumps.values()), idle)
                if why is not None:
                    self._finish_held(list(open_pumps.values()), why)
                    return

    def _handle(self, stream: str, lines: list[bytes]) -> None:
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if stream == "stdout":
                self.output.stdout_line(line)
            else:
                self.output.stderr_line(line)

    def _finish_held(self, pumps: list[Pump], why: str) -> None:
        """Stop reading pipes a background process holds: log what was read (the script's
        own output is all in by now), then the unfinished last lines, and say why."""
        partials = [(pump.name, pump.take_partial()) for pump in pumps]  # no more lines after
        while True:
            try:
                stream, lines = self.lines.get_nowait()
            except queue.Empty:
                break
            self._handle(stream, lines or [])
        for stream, lines in partials:
            self._handle(stream, lines)
        self.events.log("warning", _HELD_OPEN[why])

    def _stop_step(self) -> None:
        """One step of the cancel sequence: SIGTERM first, SIGKILL once the grace is over."""
        now = time.monotonic()
        if self.term_sent_at is None:
            self.term_sent_at = now
            self.events.log("warning", f"{self.cancel.reason}: stopping the script")
            self._signal(signal.SIGTERM)
        elif not self.killed and now - self.term_sent_at >= self.job.cancel_grace_seconds:
            self.events.log("warning", "the script did not stop in time: killing it")
            self._kill_now()

    def _finish_group(self) -> None:
        """After a cancel: wait for the whole group to go (SIGKILL after the grace)."""
        self._stop_step()
        assert self.term_sent_at is not None
        give_up = self.term_sent_at + self.job.cancel_grace_seconds + KILL_WAIT_SECONDS
        if not self._wait_for_group(give_up):
            self.events.log("warning", "some processes of the script could not be stopped")

    def _wait_for_group(self, give_up: float) -> bool:
        """Wait until no process of the script's group is left, reaping the ones re-parented
        to the runner, continuing the cancel sequence meanwhile; False if ``give_up`` came."""
        while self.proc is not None and (self.proc.poll() is None or _group_alive(self.proc)):
            if self.proc.returncode is not None:
                _reap_orphans()  # only once the script's own status has been collected
            if self.term_sent_at is not None:
                self._stop_step()
            if time.monotonic() > give_up:
                return False
            time.sleep(0.05)
        return True

    def _kill_now(self) -> None:
        self.killed = True
        self._signal(signal.SIGKILL if _POSIX else signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            if _POSIX:
                os.killpg(proc.pid, signum)
            elif proc.poll() is None:
                proc.terminate()
        except (ProcessLookupError, PermissionError):
            pass

    def _outcome(self, returncode: int) -> ScriptOutcome:
        exit_code = 128 - returncode if returncode < 0 else returncode
        if self.cancel.cancelled:
            exit_code = CANCELED_EXIT_CODE
        elif self.output.failed_by_message and exit_code == 0:
            exit_code = 1
        return ScriptOutcome(
            exit_code=exit_code,
            canceled=self.cancel.cancelled,
            cancel_reason=self.cancel.reason,
            result_message=self.output.result_message,
            failed_by_message=self.output.failed_by_message,
        )


def _thread(target: Callable[..., None], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` into a pipe and close it (EOF); a script that never reads it is fine."""
    try:
        with open(fd, "wb", closefd=True) as pipe:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass


def _group_alive(proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is None or not _POSIX:
        return False
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_orphans() -> None:
    """Collect exited processes re-parented to the runner (it is a subreaper on Linux).

    Only called once the script's own process has been waited for, so it never steals the
    exit status ``subprocess`` needs."""
    if not _POSIX:
        return
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
