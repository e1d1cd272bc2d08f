"""Running a bench's receiver process under valgrind's callgrind: instructions executed are
counted the same however loaded the shared machine is, so two versions of the code compare
where CPU seconds drown in noise. Only user-space instructions count (the kernel's socket
reads and page-cache writes do not), and valgrind's CPU lacks SHA-NI, so OpenSSL hashes in
software there: compare versions and the floor with each other, not with CPU seconds.
"""

from __future__ import annotations

import multiprocessing.spawn as spawn
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any


def wrapper(directory: str, name: str) -> tuple[str, Path]:
    """A script that runs Python under callgrind (for ``spawn``), and where it writes."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    out = Path(directory) / f"callgrind.{name}.out"
    script = Path(directory) / f"callgrind-{name}.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'exec valgrind -q --tool=callgrind --callgrind-out-file={out} {sys.executable} "$@"\n'
    )
    script.chmod(0o755)
    return str(script), out


def start(child: Any, script: str | None) -> None:
    """``child.start()``; under ``script`` (see :func:`wrapper`) when given."""
    if script is None:
        child.start()
        return
    saved = spawn.get_executable()
    spawn.set_executable(script)
    try:
        child.start()
    finally:
        spawn.set_executable(os.fsdecode(saved))


def instructions(out: Path) -> int:
    """Instructions executed (callgrind's ``Ir`` total) by the process that wrote ``out``."""
    match = re.search(r"^(?:summary|totals):\s*(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(match.group(1))
