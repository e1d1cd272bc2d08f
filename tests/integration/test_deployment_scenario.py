"""The end-to-end deployment of :mod:`tests.deployment_scenario` on the development install
(``tests/binary/test_binary.py`` runs the same one on the single executable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deployment_scenario import run_scenario
from tests.fleet import running_fleet

pytestmark = pytest.mark.slow


def test_the_development_install_deploys_end_to_end(tmp_path: Path) -> None:
    with running_fleet(tmp_path) as fleet:
        run_scenario(fleet)
