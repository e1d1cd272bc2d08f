"""Fork server: one runner process of a build that forks a fresh runner for each request.

Starting a runner costs an interpreter start and the imports of its commands: ~50 ms of CPU,
which on a small machine running many targets' steps is most of what a step costs. A fork
server pays that once: the agent starts ``octo-runner --fork-server`` with a control socket
(``AF_UNIX``, ``SOCK_SEQPACKET``) as its stdin, the server imports every command, says
``{"ready": true}``, then for each message ``{"id": N}`` carrying three file descriptors
(the new runner's stdin, stdout and stderr) forks a child that becomes exactly what a
runner started from scratch is: its own session, those three descriptors as 0, 1 and 2,
nothing else of the server's, and the same ``serve`` of one request. The server answers
``{"id": N, "pid": P}`` (or ``{"id": N, "error": "..."}``) and, when a child ends,
``{"exit": P, "code": C}`` with the code as ``subprocess`` reports it (``-signal`` when
killed): the agent is not the child's parent, so it learns the exit code from here.

The server holds no request data (requests travel on the child's own stdin), runs no
thread (so forking is safe), and ends when the control socket reaches end-of-file: the
agent stopped or died. Its children asked for SIGTERM on its death (``stop_with_parent``),
so they are cancelled then, as a runner is when its agent dies.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import helpers
from .cancellation import load_prctl
from .commands import COMMANDS, load

#: a control message is a small JSON object
MESSAGE_BYTES = 4096
#: descriptors a fork request carries: the child's stdin, stdout and stderr
STDIO_FDS = 3


def serve_forks(control_fd: int = 0) -> int:
    """Run the fork server on the control socket at ``control_fd``; the exit code."""
    control = socket.socket(fileno=os.dup(control_fd))
    control.setblocking(True)
    _detach_stdio()
    for name in COMMANDS:  # the children's imports, paid once here
        with contextlib.suppress(Exception):
            load(name)
    _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    live: set[int] = set()
    wake = (wake_read, wake_write)
    try:
        _send(control, {"ready": True, "pid": os.getpid()})
        while True:
            ready, _, _ = select.select([control.fileno(), wake_read], [], [])
            if wake_read in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 512)
                _reap(control, live)
            if control.fileno() in ready and not _fork_request(control, live, wake):
                return 0
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the agent is gone: the children get SIGTERM as this process ends


def _preload() -> None:
    """Load what every child would otherwise load itself, lazily, per request: the C
    library's ``prctl`` (``ctypes``, ~3 ms of CPU per runner) and the codec ``zipfile``
    decodes entry names with (cp437, for every name without the UTF-8 flag), and the
    script helpers' text (read and inflated from the zipapp otherwise). Then the heap is
    frozen (``gc.freeze``): a collection in a child no longer walks the server's objects,
    each page it writes to there being one more copy-on-write page fault."""
    load_prctl()
    helpers.preload()
    with contextlib.suppress(LookupError):
        codecs.lookup("cp437")
    gc.collect()
    gc.freeze()


def _detach_stdio() -> None:
    """Point 0 and 1 at ``/dev/null``: the control socket is used through its own
    descriptor, and nothing a child inherits may reach it."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _fork_request(control: socket.socket, live: set[int], wake: tuple[int, int]) -> bool:
    """Handle one control message; ``False`` at end-of-file."""
    try:
        data, fds, flags, _ = socket.recv_fds(control, MESSAGE_BYTES, STDIO_FDS)
    except InterruptedError:
        return True
    if not data:  # end-of-file (on SOCK_SEQPACKET an empty message reads the same)
        _close(fds)
        return False
    try:
        request = json.loads(data)
        ident = request["id"]
    except (ValueError, KeyError, TypeError):
        _close(fds)
        return True  # not from our agent's code: nothing to answer to
    if len(fds) != STDIO_FDS or flags & socket.MSG_CTRUNC:  # CTRUNC: more were sent
        _close(fds)
        _send(control, {"id": ident, "error": f"expected {STDIO_FDS} descriptors"})
        return True
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    try:
        pid = os.fork()
    except OSError as exc:
        _close(fds)
        _send(control, {"id": ident, "error": f"cannot fork: {exc.strerror or exc}"})
        return True
    if pid == 0:
        _child(control, fds, wake)
    _close(fds)
    live.add(pid)
    _send(control, {"id": ident, "pid": pid})
    return True


def _child(control: socket.socket, fds: list[int], wake: tuple[int, int]) -> NoReturn:
    """Become a runner started for one request; never returns to the server's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        _close(wake)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)  # the copies at 0, 1, 2 are inheritable, as a process's are
        _close([fd for fd in fds if fd > 2])
        from .__main__ import serve

        out = os.fdopen(1, "wb", closefd=False)
        sys.stdout = sys.stderr  # a stray print() must never corrupt the event stream
        code = serve(sys.stdin.buffer, out, parent_pid=os.getppid())
        with contextlib.suppress(OSError):
            out.flush()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


def _reap(control: socket.socket, live: set[int]) -> None:
    """Report every child that ended."""
    while live:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            live.clear()
            return
        if pid == 0:
            return
        live.discard(pid)
        _send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    control.sendall(json.dumps(message).encode("utf-8"))


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)
