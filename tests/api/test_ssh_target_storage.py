"""SSH targets as stored, on SQLite and PostgreSQL: credentials sealed in the row (never in
clear in the database), read back by the transport's source, kept by an update without
credentials, re-sealed by master-key rotation; trust on first use records the key once."""

from __future__ import annotations

import asyncssh
import pytest

from octo_appliance.db import Target
from octo_appliance.transports.ssh.settings import openssh_fingerprint
from octo_appliance.transports.ssh.stored import StoredSshTargets
from octo_appliance.vault import KeyRing, MasterKey, Vault

FINGERPRINT = "SHA256:" + "A" * 43


@pytest.fixture
def key_text() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()


def create(api, key_text: str, **ssh):  # type: ignore[no-untyped-def]
    assert api.post("/environments", json={"name": "Dev"}).status_code in (201, 409)
    block = {"host": "web.example", "user": "deploy", "directory": "/srv/octo"}
    block.update(ssh)
    block.setdefault("private_key", key_text)
    body = {"name": "web", "environments": ["Dev"], "roles": ["web"]}
    response = api.post(
        "/targets", json={**body, "communication_style": "ssh", "transport_settings": block}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_credentials_are_sealed_and_read_back(octo, api, key_text: str) -> None:
    created = create(api, key_text, host_key_fingerprint=FINGERPRINT, port=2222)
    row = Target.get_by_id(created["id"])
    assert "PRIVATE KEY" not in (row.sealed_credentials or "") and row.sealed_credentials
    source = StoredSshTargets(octo.appliance.vault)
    target = source.load(created["id"])
    assert (target.host, target.port, target.user, target.directory) == (
        "web.example",
        2222,
        "deploy",
        "/srv/octo",
    )
    assert target.credentials.private_key.strip() == key_text.strip()
    assert openssh_fingerprint(target.fingerprint) == FINGERPRINT
    # an update without credentials keeps them
    block = {"host": "web2.example", "user": "deploy", "host_key_fingerprint": FINGERPRINT}
    response = api.put(f"/targets/{created['id']}", json={"transport_settings": block})
    assert response.status_code == 200, response.text
    assert source.load(created["id"]).credentials.private_key.strip() == key_text.strip()
    # master-key rotation re-seals them
    from octo_appliance.db.rekey import reseal_values

    old = octo.appliance.vault
    rotating = Vault(KeyRing(MasterKey.generate(), (old.ring.current,)))
    reseal_values(octo.appliance.db, rotating, batch_size=2, progress=lambda *a: None)
    new_only = StoredSshTargets(Vault(KeyRing(rotating.ring.current)))
    assert new_only.load(created["id"]).credentials.private_key.strip() == key_text.strip()


def test_trust_on_first_use_records_the_key_once(octo, api, key_text: str) -> None:
    created = create(api, key_text, trust_on_first_use=True)
    assert created["transport_settings"]["host_key_fingerprint"] is None
    source = StoredSshTargets(octo.appliance.vault)
    source.record_host_key(created["id"], "ab" * 32)
    source.record_host_key(created["id"], "cd" * 32)  # a later key never replaces the first
    answered = api.get(f"/targets/{created['id']}").json()
    assert answered["transport_settings"]["host_key_fingerprint"] == openssh_fingerprint("ab" * 32)
