"""A fleet whose appliance loads first-party plugins as an operator installs them for the
single executable: each plugin's wheel, built by ``build/build_plugins.py``, in
``<data dir>/plugins/``. Agents get nothing: they fetch the plugins' target-side code on
demand."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.fleet import Fleet, running_fleet
from tests.plugin_wheels import ROOT, builder


def first_party_wheel(distribution: str, out: Path) -> Path:
    """The wheel of ``plugins/<distribution>/``, written into ``out``."""
    wheel: Path = builder().build_wheel(ROOT / "plugins" / distribution, out)
    return wheel


@contextlib.contextmanager
def fleet_with_plugins(root: Path, distributions: Sequence[str], **kwargs: Any) -> Iterator[Fleet]:
    """A started fleet whose plugins folder holds the wheels of ``distributions``."""
    folder = root / "appliance-data" / "plugins"
    folder.mkdir(parents=True)
    for distribution in distributions:
        first_party_wheel(distribution, folder)
    with running_fleet(root, **kwargs) as fleet:
        rows = {row["name"]: row for row in fleet.call("GET", "/plugins")["items"]}
        for distribution in distributions:
            row = rows[f"octo-{distribution}"]
            assert (row["source"], row["state"]) == ("wheel", "loaded"), row
        yield fleet


def deploy(fleet: Fleet, steps: list[dict[str, Any]], timeout: float = 180) -> dict[str, Any]:
    """A project with ``steps``, a release, a deployment to Dev; the finished task."""
    return fleet.wait_task(fleet.start_deployment(steps), timeout=timeout)
