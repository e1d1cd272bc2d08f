"""Two nodes started at once on an empty database, an empty ``shared_dir`` and no master key
yet: both start (the key id check passes: they made one key), and show agents one certificate.

Real ``serve`` processes started together from two threads; the exact interleaving is the
machine's (tests/unit/test_shared_dir_race.py forces the race on the files with a barrier).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.ha.cluster import throwaway_database
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_nodes_starting_together_on_nothing_agree_on_key_and_certificate(
    tmp_path: Path,
) -> None:
    with throwaway_database() as database:
        nodes = [
            ServeProcess(
                tmp_path / name,
                env={
                    "OCTO_DATABASE": database,
                    "OCTO_MASTER_KEY_FILE": str(tmp_path / "key" / "master.key"),
                    "OCTO_SHARED_DIR": str(tmp_path / "shared"),
                    "OCTO_NODE_NAME": name,
                },
            )
            for name in ("node-1", "node-2")
        ]
        failures: list[BaseException] = []
        go = threading.Barrier(len(nodes))

        def start(node: ServeProcess) -> None:
            go.wait()
            try:
                node.start()
            except BaseException as exc:  # reported below, with the node's output
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert not failures, failures
            thumbprints = {node.banner.thumbprint for node in nodes}
            assert len(thumbprints) == 1, [node.output() for node in nodes]
            assert not [p.name for p in (tmp_path / "shared").rglob(".*")]
        finally:
            for node in nodes:
                if node.process is not None:
                    node.__exit__(None, None, None)
