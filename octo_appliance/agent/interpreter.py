"""Which Python runs the runner zipapp, and how a frozen program runs one itself.

The runner is a stdlib-only zipapp started as ``<python> <runner.pyz>``. From a development
install, ``<python>`` is this interpreter with ``-I -S``. A program frozen by PyInstaller
(the single ``octo-appliance`` executable) has no interpreter to name: ``sys.executable`` is
the program itself, whose command line would take the archive for a command ("invalid
choice"). So the frozen program has a hidden entry instead: started with a ``.pyz`` path as
its first argument, it runs that archive with its own embedded interpreter
(:func:`run_zipapp`, called from ``octo_appliance/__main__.py`` before the CLI is imported),
and :func:`python_command` names just the program. The built-in worker running as another
account prefers the system's ``python3`` (see :mod:`octo_appliance.transports.local`).
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable, MutableMapping, Sequence

ZIPAPP_SUFFIX = ".pyz"


def frozen() -> bool:
    """Whether this program is a PyInstaller build (``sys.executable`` is the program)."""
    return bool(getattr(sys, "frozen", False))


#: set by the one-file launcher (build/launcher/octo_launcher.c): the executable it started from
LAUNCHER_VARIABLE = "OCTO_EXECUTABLE"


def program_path() -> str:
    """The file to run to start this frozen program again. The one-file launcher execs an
    unpacked copy in the user's cache (docs/executable-cache.md), which another account (the
    built-in worker's) cannot reach: it names the executable it started from instead."""
    launcher = os.environ.get(LAUNCHER_VARIABLE, "")
    return launcher if os.path.isabs(launcher) and os.path.isfile(launcher) else sys.executable


def python_command() -> list[str]:
    """The argv prefix that runs a zipapp with this program's Python."""
    if frozen():
        return [program_path()]
    # isolated (no user site, no PYTHON* variables, no cwd on sys.path), and no site module:
    # the runner is stdlib-only, and this starts it faster
    return [sys.executable, "-I", "-S"]


def is_zipapp_call(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (without the program name) asks to run a zipapp: no command of the
    CLI ends with ``.pyz``, so the two cannot be confused."""
    return bool(argv) and argv[0].endswith(ZIPAPP_SUFFIX)


def run_zipapp(argv: Sequence[str]) -> None:
    """Run the zipapp ``argv[0]`` with the arguments after it, as ``python argv[0] ...``
    would: ``runpy`` puts the archive first on ``sys.path`` (ahead of PyInstaller's finder,
    which comes after ``zipimport``, so the archive's own ``octo_runner`` wins over the copy
    bundled in the program) and runs its ``__main__``."""
    sys.argv = list(argv)
    if frozen():
        restore_environment(os.environ)
    runpy.run_path(argv[0], run_name="__main__")


def main_unless_zipapp(load_main: Callable[[], Callable[[], int]]) -> int:
    """What a ``__main__`` runs: the zipapp given as the first argument (how a frozen
    program runs the runner), else the command line ``load_main()`` returns, imported only
    then (the runner needs none of it)."""
    if is_zipapp_call(sys.argv[1:]):
        run_zipapp(sys.argv[1:])
        return 0
    return load_main()()


def restore_environment(environ: MutableMapping[str, str]) -> None:
    """Undo what PyInstaller's one-file bootloader added to the environment, so the scripts
    the runner starts see the one the runner was given, as under a plain ``python3``: the
    bootloader puts its unpack dir first on ``LD_LIBRARY_PATH`` (system programs such as
    ``curl`` would load the bundled OpenSSL) and passes itself ``_PYI_*`` variables (a
    PyInstaller program the script starts would take them for its own); and the launcher's
    :data:`LAUNCHER_VARIABLE`."""
    original = environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original is None:
        environ.pop("LD_LIBRARY_PATH", None)
    else:
        environ["LD_LIBRARY_PATH"] = original
    for name in [n for n in environ if n.startswith(("_PYI_", "_MEIPASS"))]:
        del environ[name]
    environ.pop(LAUNCHER_VARIABLE, None)
