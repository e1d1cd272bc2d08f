"""What the ``ssh`` transport does on a target over one connection, needing only ``python3``.

- :func:`prepare`: one ``python3`` call makes the transport's directory (``runners/``,
  ``plugins/``, ``cache/``, ``applications/``, ``state/``, ``work/``, ``tmp/``, each 0700)
  and says where it is, the Python version and which runner builds are there already; no
  ``python3`` on the PATH fails with a ``python_missing`` call failure naming it.
- :func:`put_file`: content into the directory over SFTP, to a temporary name first, checked
  by length (and SHA-256 unless the sender already knows it), then renamed into place: a name
  in ``runners/``, ``plugins/`` or ``cache/`` always means the content its SHA-256 says.
- :func:`run_runner`: the runner as ``python3 -I -S <runner>.pyz`` in a fresh work dir
  (made 0700 first, the runner's cwd, as on an agent), in its own session (sshd
  starts every command as a session leader, so its process group is the runner's pid, which
  the command reports first on stderr). The request, sensitive variables included, goes on
  stdin only; events come back as JSON lines. Cancelling sends SIGTERM to the runner (it
  stops its script), then after the grace SIGKILL to its group and every descendant.

Nothing sensitive is ever in a command line: argv holds paths and pids only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

import asyncssh

from octo_appliance.agent.runner_host import LINE_LIMIT, STDERR_LINES, Collected
from octo_appliance.comms import CallFailed, KnownContent, UploadSource
from octo_appliance.transports.ssh.pool import Pooled
from octo_appliance.transports.worker_files import open_source

log = logging.getLogger("octo_appliance.ssh")
CHUNK = 4 * 1024 * 1024
PID_PREFIX = "octo-runner-pid "
SUBDIRS = ("runners", "plugins", "cache", "applications", "state", "work", "tmp")
Emit = Callable[[dict[str, Any]], Awaitable[None]]

_PREPARE = """
import json, os, sys
d = os.path.abspath(os.path.expanduser(sys.argv[1]))
for name in sys.argv[2:]:
    os.makedirs(os.path.join(d, name), mode=0o700, exist_ok=True)
runners = [n for n in os.listdir(os.path.join(d, "runners")) if n.endswith(".pyz")]
version = ".".join(str(part) for part in sys.version_info[:3])
print(json.dumps({"directory": d, "python": version, "ok": sys.version_info >= (3, 9),
                  "runners": runners}))
"""

#: SIGKILL to a process group and to every descendant of its leader (read from /proc)
_KILL_TREE = """
import os, signal, sys
root = int(sys.argv[1]); children = {}
for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
    if not entry.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % entry) as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        continue
    children.setdefault(ppid, []).append(int(entry))
todo, tree = [root], []
while todo:
    pid = todo.pop(); tree.append(pid); todo.extend(children.get(pid, []))
for kill, target in [(os.killpg, root)] + [(os.kill, pid) for pid in tree]:
    try:
        kill(target, signal.SIGKILL)
    except OSError:
        pass
"""


def python_command(code: str, *args: str) -> str:
    return " ".join(["exec python3 -I -S -c", shlex.quote(code), *map(shlex.quote, args)])


async def prepare(conn: asyncssh.SSHClientConnection, directory: str, label: str) -> dict[str, Any]:
    """Make the directory; its absolute path, the Python version, the runners present."""
    done = await conn.run(python_command(_PREPARE, directory, *SUBDIRS), check=False)
    stdout, stderr = _text(done.stdout), _text(done.stderr)
    if done.exit_status == 127 or ("python3" in stderr and "not found" in stderr):
        raise CallFailed(
            "python_missing",
            f"python3 was not found on {label}: the ssh transport needs python3 (3.9 or "
            "newer) on the PATH of the SSH user, and nothing else",
            hint="install python3 on the target (apt-get install python3, dnf install python3)",
        )
    try:
        facts = json.loads(stdout)
    except ValueError:
        facts = None
    if done.exit_status != 0 or not isinstance(facts, dict):
        raise CallFailed(
            "prepare_failed",
            f"cannot prepare the directory {directory!r} on {label}: "
            f"{stderr.strip()[-500:] or f'exit code {done.exit_status}'}",
            hint="check that the SSH user may create that directory (transport_settings.directory)",
        )
    if not facts.get("ok"):
        raise CallFailed(
            "python_too_old",
            f"python3 on {label} is {facts.get('python')}: the runner needs 3.9 or newer",
            hint="install a newer python3 on the target",
        )
    return facts


async def put_file(
    sftp: asyncssh.SFTPClient, content: UploadSource, final: str, sha256: str, length: int | None
) -> int:
    """Write ``content`` to ``final`` (checked, then renamed into place); its length."""
    partial = f"{final}.{secrets.token_hex(4)}.partial"
    digest = None if isinstance(content, KnownContent) else hashlib.sha256()
    size = 0
    try:
        async with sftp.open(partial, "wb") as remote:
            if isinstance(content, bytes):
                view = memoryview(content)
                for offset in range(0, len(view), CHUNK):
                    block = bytes(view[offset : offset + CHUNK])
                    if digest is not None:
                        digest.update(block)
                    await remote.write(block)
                size = len(view)
            else:
                source = await asyncio.to_thread(open_source, content)
                try:
                    while block := await asyncio.to_thread(source.read, CHUNK):
                        if digest is not None:
                            digest.update(block)
                        await remote.write(block)
                        size += len(block)
                finally:
                    source.close()
        if length is not None and size != length:
            raise CallFailed("length_mismatch", f"sent {size} bytes, expected {length}")
        if digest is not None and digest.hexdigest() != sha256:
            raise CallFailed("hash_mismatch", f"the content sent is not {sha256}")
        await _rename(sftp, partial, final)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(sftp.remove(partial))
        raise
    return size


async def _rename(sftp: asyncssh.SFTPClient, source: str, target: str) -> None:
    try:
        await sftp.posix_rename(source, target)
    except asyncssh.SFTPOpUnsupported:
        with contextlib.suppress(asyncssh.SFTPError):
            await sftp.remove(target)
        await sftp.rename(source, target)


async def is_file(sftp: asyncssh.SFTPClient, path: str) -> bool:
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    return attrs.type == asyncssh.FILEXFER_TYPE_REGULAR


async def run_runner(
    conn: asyncssh.SSHClientConnection,
    pyz: str,
    document: dict[str, Any],
    *,
    emit: Emit,
    kill_grace: float,
    label: str,
) -> dict[str, Any]:
    """Run one request through the runner on the target; cancel this to kill its tree."""
    work_dir = shlex.quote(document["work_dir"])
    command = (
        f"mkdir -m 700 {work_dir} && cd {work_dir} && echo {PID_PREFIX}$$ >&2 && "
        f"exec python3 -I -S {shlex.quote(pyz)}"
    )
    process = await conn.create_process(command, encoding=None)
    pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stderr = asyncio.create_task(_read_stderr(process.stderr, pid, label))
    collected = Collected()
    try:
        process.stdin.write(json.dumps(document).encode("utf-8"))
        process.stdin.write_eof()
        while line := await _readline(process.stdout):
            event = _event(line)
            if event is not None:
                collected.add(event)
                await emit(event)
        finished = await process.wait(check=False)
        await stderr
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
        stderr.cancel()
        raise CallFailed(
            "ssh_disconnected",
            f"the SSH connection to {label} dropped during the run: {exc}",
            hint="the next task reconnects; check the network and the server's sshd log",
        ) from None
    except BaseException:
        await asyncio.shield(_stop(conn, process, pid, kill_grace, label))
        stderr.cancel()
        raise
    code = finished.exit_status
    if code is None or code < 0:
        code = 128 + _signal_number(finished.exit_signal)
    return collected.outcome(code, document["work_dir"])


async def _stop(
    conn: asyncssh.SSHClientConnection,
    process: asyncssh.SSHClientProcess[bytes],
    pid: asyncio.Future[int],
    kill_grace: float,
    label: str,
) -> None:
    """SIGTERM to the runner, then SIGKILL to its group and descendants after the grace."""
    try:
        if not pid.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pid), 5.0)
        if not pid.done():
            log.warning("cannot stop the runner on %s: it never said its pid", label)
            return
        log.info("stopping the runner on %s (pid %d)", label, pid.result())
        await conn.run(f"kill -TERM {pid.result()}", check=False)
        try:
            await asyncio.wait_for(process.wait_closed(), kill_grace)
        except TimeoutError:
            log.warning(
                "the runner on %s did not stop within %g s; killing its tree", label, kill_grace
            )
            await conn.run(python_command(_KILL_TREE, str(pid.result())), check=False)
    except (OSError, asyncssh.Error) as exc:
        log.warning("cannot stop the runner on %s: %s", label, exc)
    finally:
        process.close()


async def _read_stderr(
    stream: asyncssh.SSHReader[bytes], pid: asyncio.Future[int], label: str
) -> None:
    """The first line names the runner's pid; the rest (masked by the runner) is logged."""
    lines = 0
    while raw := await stream.readline():
        text = raw.decode("utf-8", "replace").rstrip()
        if not pid.done() and text.startswith(PID_PREFIX):
            with contextlib.suppress(ValueError):
                pid.set_result(int(text[len(PID_PREFIX) :]))
            continue
        lines += 1
        if lines <= STDERR_LINES:
            log.info("runner stderr on %s: %s", label, text[:1000])
    if not pid.done():
        pid.cancel()


async def _readline(stream: asyncssh.SSHReader[bytes]) -> bytes:
    """A line (a partial one at the end; b"" at EOF); one over the limit is dropped."""
    while True:
        line = await stream.readline()
        if len(line) <= LINE_LIMIT:
            return line
        log.warning("the runner wrote an over-long line (%d bytes); it was dropped", len(line))


def _event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("type"), str) else None


def _signal_number(exit_signal: Any) -> int:
    names = {"TERM": 15, "KILL": 9, "INT": 2, "HUP": 1}
    return names.get(exit_signal[0], 15) if exit_signal else 15


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


async def remove_tree(pooled: Pooled, path: str) -> None:
    """``rm -rf`` a path on the target; a failure is only logged (a work dir left behind)."""
    try:
        await pooled.conn.run(f"rm -rf -- {shlex.quote(path)}", check=False)
    except (OSError, asyncssh.Error) as exc:
        log.info("cannot remove %s on %s: %s", path, pooled.target.label, exc)
