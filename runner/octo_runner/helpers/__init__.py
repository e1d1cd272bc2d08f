"""The helper code injected into scripts, and the variable tables handed to it.

Helper sources are package data read with ``pkgutil.get_data`` so they load from the zipapp.
Variables go to scripts as a table on an inherited pipe: JSON for Python and PowerShell, a
line format for shells (see ``posix.sh``) that a shell decodes with builtins only.
"""

from __future__ import annotations

import functools
import json
import pkgutil
import re
from collections.abc import Mapping

#: Files written into a script's helper directory, by script syntax (the first is started).
BOOTSTRAP_FILES = {
    "bash": ("bootstrap.sh",),
    "sh": ("bootstrap.sh",),
    "python": ("bootstrap.py", "octo.py"),
    "pwsh": ("bootstrap.ps1",),
}


@functools.cache
def read_helper(name: str) -> str:
    """A helper file's text, read from the package once per process (a fork server reads
    them all before it forks: see ``preload``)."""
    data = pkgutil.get_data(__name__, name)
    if data is None:  # pragma: no cover - only if the package was built without its data
        raise FileNotFoundError(f"runner helper {name} is missing from the package")
    return data.decode("utf-8")


def bootstrap_files(syntax: str) -> dict[str, str]:
    """File name -> text of the helper files a ``syntax`` script needs."""
    if syntax == "bash":
        return {"bootstrap.sh": _shell(("posix.sh", "bash.sh", "run.sh"))}
    if syntax == "sh":
        return {"bootstrap.sh": _shell(("posix.sh", "run.sh"))}
    return {name: read_helper(name) for name in BOOTSTRAP_FILES[syntax]}


def preload() -> None:
    """Read every helper file now, so the runners a fork server forks find them in memory
    instead of each reading and inflating them from the zipapp."""
    for syntax in BOOTSTRAP_FILES:
        bootstrap_files(syntax)


def _shell(parts: tuple[str, ...]) -> str:
    return "\n".join(read_helper(part) for part in parts)


def shell_table(variables: Mapping[str, str]) -> tuple[bytes, list[str]]:
    """Encode ``variables`` as ``NAME<TAB>ESCAPED`` lines; also return names left out.

    A name holding a tab, newline or carriage return cannot be a table key, so it is left
    out (and reported); values are escaped, so any value fits.
    """
    lines = []
    skipped = []
    for name, value in variables.items():
        if _NOT_A_KEY.search(name) is not None:
            skipped.append(name)
            continue
        lines.append(f"{name}\t{_escape(value)}\n")
    return "".join(lines).encode("utf-8", "replace"), skipped


#: what a table key cannot hold (one regex search per name: a deployment's variables hold
#: every machine's outputs, hundreds of names per request at 100 targets)
_NOT_A_KEY = re.compile("[\t\n\r\0]")
#: what ``_escape`` rewrites; most values hold none of it and are written as they are
_SPECIAL = re.compile(r"[\x00-\x1f\\\x7f]")


def _escape(value: str) -> str:
    if _SPECIAL.search(value) is None:
        return value
    out = []
    for char in value:
        if char == "\\" or char < " " or char == "\x7f":
            out.append("".join(f"\\0{byte:03o}" for byte in char.encode("utf-8")))
        else:
            out.append(char)
    return "".join(out)


def json_table(variables: Mapping[str, str]) -> bytes:
    return json.dumps(dict(variables), ensure_ascii=True).encode("ascii")
