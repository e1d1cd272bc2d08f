"""A pyinfra connector for many local targets: ``@localtarget/<name>`` runs like ``@local``.

pyinfra's own ``@local`` connector allows one host per inventory, so N local "hosts" need a
connector that names them. This one only changes how hosts are named; running commands and
copying files are ``@local``'s own code. ``bench/_peers.py`` installs this module into
``bench/.peers-venv`` as a tiny distribution with a ``pyinfra.connectors`` entry point (the
way pyinfra finds connectors); it imports pyinfra, which only that virtualenv has.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyinfra.api.exceptions import InventoryError  # type: ignore[import-not-found]
from pyinfra.connectors.local import LocalConnector  # type: ignore[import-not-found]

ENTRY_POINT = "localtarget"


class LocalTargetConnector(LocalConnector):  # type: ignore[misc]
    """``@localtarget/t001`` is a host named ``t001`` whose commands run on this machine."""

    @staticmethod
    def make_names_data(name: str | None = None) -> Iterator[tuple[str, dict[str, Any], list[str]]]:
        if not name:
            raise InventoryError("@localtarget needs a name: @localtarget/<name>")
        yield name, {}, [f"@{ENTRY_POINT}"]
