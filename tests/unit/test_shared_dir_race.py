"""Nodes starting at once on an empty ``shared_dir``: every one ends with the one master key,
certificate and signing key that are on disk (docs/ha.md).

Real processes (forked, so each has its own interpreter and file descriptors) released together
by a barrier, each calling the real functions a node start calls, against one directory. Before
creation was made exclusive, the master key and the certificate were written with a rename, so
the last writer replaced what the first had already loaded.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from octo_appliance.builds.signing import load_or_create_signing_key
from octo_appliance.certificate import load_or_create_certificate
from octo_appliance.config import load_config
from octo_appliance.vault.keys import open_keyring, read_keyring_file
from octo_appliance.vault.values import Vault

NODES = 4
ROUNDS = 5


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def start_node(root: str, node: int, barrier: Barrier) -> tuple[str, str, bytes]:
    """What a node's start makes in the shared places: (master key id, thumbprint, signing
    public key)."""
    shared = Path(root) / "shared"
    config = load_config(
        {
            "data_dir": str(Path(root) / f"node-{node}"),
            "shared_dir": str(shared),
            "master_key_file": str(shared / "master.key"),
        },
        environ={},
    )
    barrier.wait()
    ring = open_keyring(config.data_path, config.master_key_file, create=True, environ={}).ring
    cert = load_or_create_certificate(config, ring)
    signing = load_or_create_signing_key(Vault(ring), config.shared_path)
    return ring.current.key_id, cert.thumbprint_sha256_hex, public_bytes(signing)


def test_nodes_starting_at_once_end_with_one_key_certificate_and_signing_key(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, context.Pool(NODES) as pool:
        for round_ in range(ROUNDS):
            root = tmp_path / f"round-{round_}"
            barrier = manager.Barrier(NODES)
            seen = pool.starmap(start_node, [(str(root), n, barrier) for n in range(NODES)])
            assert len(set(seen)) == 1, f"round {round_}: nodes disagree: {seen}"
            # ... and what they agree on is what is on disk (the winner's, read back).
            ring = read_keyring_file(root / "shared" / "master.key")
            config = load_config(
                {"data_dir": str(root / "later"), "shared_dir": str(root / "shared")}, environ={}
            )
            cert = load_or_create_certificate(config, ring)
            signing = load_or_create_signing_key(Vault(ring), root / "shared")
            assert seen[0] == (
                ring.current.key_id,
                cert.thumbprint_sha256_hex,
                public_bytes(signing),
            )
            assert not cert.created
            leftovers = [p.name for p in (root / "shared").rglob(".*")]
            assert leftovers == [], f"temporary files left behind: {leftovers}"
