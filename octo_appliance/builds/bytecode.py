"""Bytecode for the runner zipapp, compiled reproducibly in a fresh interpreter.

``marshal`` marks an object it writes as shared when its reference count is above one, so the
bytes of a compiled module depend on which equal strings the compiling process happens to
hold elsewhere: the appliance (which has imported much) and the build script would make
different archives from the same source. A fresh ``python -S -s -P`` started with a fixed
environment holds the same objects on every run, so it compiles the same bytes; hash
randomisation is pinned too (``PYTHONHASHSEED=0``), for anything whose order follows hashes.

Each ``.pyc`` is an unchecked hash-based one (PEP 552): magic, flags ``0b01``, the source
hash, the code. No timestamp, and zipimport never re-reads the source to check it (the
archive is immutable and verified by its SHA-256 as a whole).
"""

from __future__ import annotations

import marshal
import subprocess
import sys

from octo_appliance.exceptions import OctoError

#: runs in the child: reads {name: source} (marshal) on stdin, writes {name: pyc} on stdout,
#: compiling in the order given (sorted by the parent) and dropping each code object at once
COMPILER = """\
import importlib.util, marshal, sys
sources = marshal.loads(sys.stdin.buffer.read())
flags = (1).to_bytes(4, "little")
out = {}
for name in sorted(sources):
    source = sources[name]
    code = compile(source, name, "exec", dont_inherit=True, optimize=0)
    header = importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source)
    out[name] = header + marshal.dumps(code)
    del code
sys.stdout.buffer.write(marshal.dumps(out))
"""
TIMEOUT = 120.0


class RunnerCompileError(OctoError):
    """The runner's modules could not be compiled (a syntax error, or no interpreter)."""


def compile_modules(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Archive name -> ``.pyc`` bytes for every source; ``{}`` where no plain interpreter
    exists (a frozen appliance: it ships a prebuilt archive anyway)."""
    if not sources or getattr(sys, "frozen", False):
        return {}
    try:
        done = subprocess.run(
            [sys.executable, "-S", "-s", "-P", "-c", COMPILER],
            input=marshal.dumps(sources),
            capture_output=True,
            env={"PYTHONHASHSEED": "0"},
            cwd="/",
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunnerCompileError(
            f"cannot compile the runner's modules: {exc}",
            hint="check that this Python can start a subprocess of itself",
        ) from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise RunnerCompileError(
            f"compiling the runner's modules failed: {last}",
            hint="fix the runner source (see the error above), then build again",
        )
    result = marshal.loads(done.stdout)
    if not isinstance(result, dict) or set(result) != set(sources):
        raise RunnerCompileError(
            "compiling the runner's modules returned something unexpected",
            hint="run build/build_runner.py to see the compiler's own error",
        )
    return {str(name): bytes(pyc) for name, pyc in result.items()}
