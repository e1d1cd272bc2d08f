"""Prepare a script launch: find the interpreter, write the helper files, encode the inputs.

Only helper code is written to disk (a fresh ``.octo-*`` directory inside the work directory,
removed after the run). The script text, which may hold substituted secrets, and the variable
table travel on two descriptors the child inherits (``OCTO_SCRIPT_FD``, ``OCTO_VARIABLES_FD``):
memory files on Linux, pipes elsewhere (:func:`script_input`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from .. import helpers
from ..errors import RunnerError

SYNTAXES = ("bash", "sh", "python", "pwsh")
_SOURCE_FIRST_ARGUMENT = '. "$1"'

_DEFAULT_INTERPRETER = {"bash": "bash", "sh": "sh", "python": "python3", "pwsh": "pwsh"}
_INSTALL_HINT = {
    "bash": "install bash on the target, or use syntax 'sh'",
    "sh": "the target needs a POSIX sh on PATH",
    "python": "install python3 on the target, or pass 'interpreter'",
    "pwsh": "install PowerShell 7 (pwsh) on the target and put it on PATH",
}


@dataclass(frozen=True)
class Launch:
    """What to start, and the bytes each inherited pipe carries."""

    argv: list[str]
    helper_dir: str
    script: bytes
    table: bytes
    skipped_names: tuple[str, ...] = ()
    #: the inputs (``"table"``, ``"script"``) that may travel in a memory file: those the
    #: bootstrap closes once read, so the script's own children cannot read them again (a
    #: pipe is empty once read; a memory file is not). bash closes the table; Python both;
    #: sh cannot name a descriptor above 9 to close it, PowerShell does not close them.
    in_memory: frozenset[str] = frozenset()


def resolve_interpreter(syntax: str, interpreter: str | None) -> str:
    """Absolute path of the program that runs ``syntax`` scripts (``RunnerError`` if none)."""
    if interpreter is None and syntax == "python" and sys.executable:
        return sys.executable
    wanted = interpreter or _DEFAULT_INTERPRETER[syntax]
    found = shutil.which(wanted)
    if found is None:
        raise RunnerError(
            f"cannot run a {syntax} script: {wanted!r} is not on PATH on this target",
            hint=_INSTALL_HINT[syntax],
        )
    return found


def prepare(
    syntax: str,
    body: str,
    variables: Mapping[str, str],
    work_dir: str,
    interpreter: str | None,
    arg0: str | None = None,
) -> Launch:
    """Write the helpers into a fresh directory under ``work_dir`` (the run's work dir, or
    the folder given for them) and describe the launch. ``arg0`` is what a shell script
    sees as ``$0`` (default: the bootstrap's path)."""
    program = resolve_interpreter(syntax, interpreter)
    helper_dir = tempfile.mkdtemp(prefix=".octo-", dir=work_dir)
    files = helpers.bootstrap_files(syntax)
    for name, text in files.items():
        with open(os.path.join(helper_dir, name), "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
    entry = os.path.join(helper_dir, helpers.BOOTSTRAP_FILES[syntax][0])
    skipped: list[str] = []
    if syntax in ("bash", "sh"):
        table, skipped = helpers.shell_table(variables)
        # A script saved on Windows would otherwise end every command with a stray \r (a
        # value set to "x\r", a file "./run.sh\r" not found); Calamari converts them too.
        body = body.replace("\r\n", "\n")
    else:
        table = helpers.json_table(variables)
    return Launch(
        argv=_argv(syntax, program, entry, arg0),
        helper_dir=helper_dir,
        script=body.encode("utf-8", "replace"),
        table=table,
        skipped_names=tuple(skipped),
        in_memory=_IN_MEMORY.get(syntax, frozenset()),
    )


_IN_MEMORY = {"bash": frozenset({"table"}), "python": frozenset({"table", "script"})}


def script_input(data: bytes, in_memory: bool = True) -> tuple[int, int | None]:
    """A descriptor the script reads ``data`` from, and, for a pipe, the write end still to
    be fed (``None`` when the descriptor already holds it all).

    On Linux it is a ``memfd``: a file in memory (never on disk), filled and rewound before
    the script starts, so the runner needs no thread to feed it and bash's ``read`` builtin
    reads it in blocks (from a pipe it reads one byte per system call: ~750 calls for a
    console script's 26 variables). Elsewhere, or if the kernel refuses, a pipe. Either way
    only the script's process tree holds it, and nothing names it in argv or environment
    beyond its number."""
    fd = _memory_file(data) if in_memory else None
    if fd is not None:
        return fd, None
    read_end, write_end = os.pipe()
    return read_end, write_end


def _memory_file(data: bytes) -> int | None:
    """A rewound ``memfd`` holding ``data``; ``None`` where there is none or it is full."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return None
    try:
        fd: int = memfd_create("octo-script-input", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        return None
    return fd


def _argv(syntax: str, program: str, entry: str, arg0: str | None) -> list[str]:
    # The shell sources the bootstrap from a -c command so that $0 is ``arg0``: a path in the
    # script's working directory, as under Calamari, where `cd "$(dirname "$0")"` stays put.
    # run.sh shifts the bootstrap's path out of the script's positional parameters.
    shell = [_SOURCE_FIRST_ARGUMENT, arg0 or entry, entry]
    if syntax == "bash":
        return [program, "--noprofile", "--norc", "-c", *shell]
    if syntax == "sh":
        return [program, "-c", *shell]
    if syntax == "python":
        return [program, "-u", entry]
    pwsh_flags = ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass"]
    return [program, *pwsh_flags, "-File", entry]
