"""A stand-in for ``systemctl`` (tests only): units are "loaded" from the unit folder at
``daemon-reload``, and ``restart`` makes a unit active unless its loaded file says
``ExecStart=/bin/false``. State lives beside the script (``state/``; ``config.json`` names
the unit folder); every call is appended to ``state/calls.log``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE = HERE / "state"


def main(argv: list[str]) -> int:
    STATE.mkdir(exist_ok=True)
    with (STATE / "calls.log").open("a", encoding="utf-8") as log:
        log.write(" ".join(argv) + "\n")
    unit_dir = Path(json.loads((HERE / "config.json").read_text())["unit_dir"])
    loaded, active, enabled = STATE / "loaded", STATE / "active", STATE / "enabled"
    for folder in (loaded, active, enabled):
        folder.mkdir(exist_ok=True)
    verb, unit = argv[0], (argv[1] if len(argv) > 1 else "")
    state = (active / unit).read_text() if unit and (active / unit).exists() else "inactive"
    if verb == "daemon-reload":
        for old in loaded.iterdir():
            old.unlink()
        for path in unit_dir.iterdir():
            if path.is_file() and not path.name.startswith("."):
                (loaded / path.name).write_bytes(path.read_bytes())
        return 0
    if verb == "enable":
        (enabled / unit).touch()
        return 0
    if verb == "restart":
        if not (loaded / unit).exists():
            print(f"Failed to restart {unit}: Unit {unit} not found.", file=sys.stderr)
            return 5
        failing = "ExecStart=/bin/false" in (loaded / unit).read_text()
        (active / unit).write_text("failed" if failing else "active")
        if failing:
            print(f"Job for {unit} failed because the control process exited", file=sys.stderr)
        return 1 if failing else 0
    if verb == "stop":
        (active / unit).write_text("inactive")
        return 0
    if verb == "is-active":
        print(state)
        return 0 if state == "active" else 3
    if verb == "status":
        print(f"* {unit} - fake unit\n     Active: {state}")
        return 0 if state == "active" else 3
    print(f"fake systemctl: unknown verb {verb}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
