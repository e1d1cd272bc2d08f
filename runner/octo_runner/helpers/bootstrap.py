"""Start a Python deployment script: load variables into ``octo``, then run the script.

The runner starts ``python -u bootstrap.py`` with the script's text on the inherited
descriptor ``OCTO_SCRIPT_FD`` and the variables (a JSON object) on ``OCTO_VARIABLES_FD``, so
neither ever touches disk, argv or the environment. The script runs as ``__main__`` with the
work directory first on ``sys.path``; tracebacks show its source lines.
"""

from __future__ import annotations

import importlib
import json
import linecache
import os
import sys
import traceback
import types

SCRIPT_NAME = "<octo-script>"


def _read_fd(variable: str) -> bytes:
    number = os.environ.pop(variable, None)
    if number is None:
        sys.exit(f"bootstrap.py is started by the Octo runner only: {variable} is unset")
    with os.fdopen(int(number), "rb") as stream:
        return stream.read()


def main() -> None:
    sys.path[0] = os.path.dirname(os.path.abspath(__file__))
    octo = importlib.import_module("octo")

    octo.variables.update(json.loads(_read_fd("OCTO_VARIABLES_FD").decode("utf-8")))
    source = _read_fd("OCTO_SCRIPT_FD").decode("utf-8")
    sys.path[0] = os.getcwd()
    sys.argv = [SCRIPT_NAME]
    linecache.cache[SCRIPT_NAME] = (len(source), None, source.splitlines(True), SCRIPT_NAME)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = __builtins__
    for name in octo.SCRIPT_GLOBALS:
        module.__dict__[name] = getattr(octo, name)
    sys.modules["__main__"] = module
    try:
        exec(compile(source, SCRIPT_NAME, "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # Python's own printer reads source lines from disk, where the script never is;
        # this one uses linecache, and leaves out the bootstrap's frame.
        frames = exc.__traceback__.tb_next if exc.__traceback__ else None
        traceback.print_exception(type(exc), exc, frames)
        sys.exit(1)


if __name__ == "__main__":
    main()
