"""Entry point: read one JSON request from stdin, run the command, write events to stdout.

Exit code: the script's exit code (0 on success), 1 when the runner itself could not do the
work, 2 for a malformed request, 143 after a cancel (SIGTERM/SIGINT). Diagnostics for humans
go to stderr; stdout carries protocol events only, so nothing else may print there.

The agent may start a runner before it has a task for it (docs/runner-protocol.md, "Process
start"): such a runner waits on stdin, so it imports its commands meanwhile, and takes its
working directory from the request's ``work_dir`` rather than from where it was started.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Sequence
from typing import BinaryIO, NoReturn

from . import PROTOCOL_VERSION, __version__
from .cancellation import (
    CancelToken,
    become_subreaper,
    install_signal_handlers,
    stop_with_parent,
)
from .commands import COMMANDS, Outcome, load
from .errors import BadInputError, RunnerError
from .masking import Masker
from .protocol import EventWriter, parse_request

#: how long a runner waits for its request before it imports its commands in the meantime
IDLE_BEFORE_WARMUP = 0.05

USAGE = f"""usage: octo-runner [--version | --help | --fork-server]

The Octo runner (version {__version__}, protocol {PROTOCOL_VERSION}) reads one JSON request on
stdin and writes JSON-lines events on stdout. It is started by the Octo agent; the protocol is
described in docs/runner-protocol.md. Commands: {", ".join(sorted(COMMANDS))}.
With --fork-server, stdin is the agent's control socket and the runner forks one child per
request instead (docs/runner-protocol.md, "Fork server").
"""


def main(argv: Sequence[str] | None = None) -> int:
    parent = os.getppid()  # the agent: the runner stops its work when that process dies
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        print(f"octo-runner {__version__} (protocol {PROTOCOL_VERSION})")
        return 0
    if args in (["--help"], ["-h"]):
        print(USAGE, end="")
        return 0
    if args == ["--fork-server"]:
        from .forkserver import serve_forks

        return serve_forks()
    if args:
        print(USAGE, end="", file=sys.stderr)
        return 2
    out: BinaryIO = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must never corrupt the event stream
    return serve(sys.stdin.buffer, out, parent_pid=parent)


def serve(stdin: BinaryIO, stdout: BinaryIO, *, parent_pid: int | None = None) -> int:
    """Handle one request; return the process exit code. With ``parent_pid``, the death of
    that parent process cancels the work (see ``cancellation.stop_with_parent``)."""
    masker = Masker()
    events = EventWriter(stdout, masker)
    cancel = CancelToken()
    install_signal_handlers(cancel)
    become_subreaper()
    if parent_pid is not None:
        stop_with_parent(parent_pid)
    try:
        if stdin.isatty():
            print("octo-runner: reading a JSON request from stdin (see --help)", file=sys.stderr)
        _prepare_while_idle(stdin)
        request = parse_request(stdin.read())
        _enter_work_dir(request.work_dir)
        masker.add_all(request.sensitive_values())
        for name in request.ignored_fields:
            events.log("verbose", f"ignoring unknown request field {name!r}")
        command = load(request.command)
        if command is None and request.plugin is not None:
            from .plugin_bundle import load_plugin_command

            command = load_plugin_command(request.plugin, request.command)
        if command is None:
            raise BadInputError(
                f"unknown command {request.command!r}",
                hint="known commands: " + ", ".join(sorted(COMMANDS)) + "; a plugin's "
                "command needs the request's 'plugin' bundle (an agent that sends it)",
            )
        outcome = command(request, events, cancel)
    except RunnerError as exc:
        outcome = _failure(events, exc.exit_code, str(exc))
    except Exception as exc:  # a bug: report it without a raw traceback on stdout
        import traceback  # only here: it costs a few ms of every start otherwise

        events.log(
            "verbose", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        )
        outcome = _failure(events, 1, f"the runner failed: {type(exc).__name__}: {exc}")
    events.result(outcome.exit_code, outcome.success, outcome.message, **outcome.extra)
    return outcome.exit_code


def _prepare_while_idle(stdin: BinaryIO) -> None:
    """Import the commands while no request comes (a runner started ahead of its task), so
    the task does not wait for that. Not when the request is there within
    ``IDLE_BEFORE_WARMUP`` (a runner started for its task, or taken while still starting):
    then only the command asked for is imported, and nothing is spent on the others. A
    request arriving meanwhile stops the warm-up at the next command."""
    if _readable(stdin, IDLE_BEFORE_WARMUP):
        return
    for name in COMMANDS:
        if _readable(stdin, 0):
            return
        # a warm-up only: a command that fails to import fails when it is asked for
        with contextlib.suppress(Exception):
            load(name)


def _readable(stdin: BinaryIO, timeout: float) -> bool:
    """Whether a read of ``stdin`` would not block (also when it cannot be polled)."""
    try:
        ready, _, _ = select.select([stdin], [], [], timeout)
    except (OSError, ValueError, TypeError):  # not a pipe or file (a test's BytesIO)
        return True
    return bool(ready)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once the output is flushed, skipping the interpreter's
    teardown: the result is written, nothing is left to clean up (no atexit handlers, files
    are closed, threads are daemons), and the teardown of every imported module would
    cost the agent ~10 ms per task waiting for end-of-file. The zipapp's entry point."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    os._exit(code)


def _enter_work_dir(work_dir: str | None) -> None:
    """Make an absolute ``work_dir`` the runner's working directory: the agent may have
    started it elsewhere, before the task was known. A dir that is not there yet is left to
    the command, which creates it (and runs its scripts in it) or reports why it cannot."""
    if work_dir is None or not os.path.isabs(work_dir):
        return
    with contextlib.suppress(OSError):
        os.chdir(work_dir)


def _failure(events: EventWriter, exit_code: int, message: str) -> Outcome:
    events.log("error", message)
    print(f"octo-runner: error: {events.masker.mask(message)}", file=sys.stderr)
    return Outcome(exit_code, False, message)


if __name__ == "__main__":
    sys.exit(main())
