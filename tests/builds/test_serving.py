"""The agent and runner manifests: served without an API key, signed with the key the
registration hands out, and refused (404/503 with a JSON body) when there is nothing to serve.

The agent build here is a stand-in file put where a development install caches the build of
today's sources, so these tests exercise the serving and signing without PyInstaller; the real
executable is served in ``tests/binary/test_agent_build.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from octo_appliance.builds.agent import LINUX_X86_64
from octo_appliance.builds.manifest import ManifestError, verify
from octo_appliance.builds.signing import signing_key_path
from octo_appliance.comms import generate_identity, thumbprint_of_pem
from octo_appliance.config import CONFIG_FILE_NAME
from octo_appliance.testing import OctoTestAppliance, start_test_appliance
from octo_appliance.vault.files import key_id_of_file
from tests.builds.support import STAND_IN, put_stand_in


def _appliance(tmp_path: Path, *, cached: bool) -> OctoTestAppliance:
    cache = tmp_path / "agent-builds"
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True)
    (data_dir / CONFIG_FILE_NAME).write_text(f"agent_build_dir = {json.dumps(str(cache))}\n")
    if cached:
        put_stand_in(cache)
    return start_test_appliance(data_dir)


@pytest.fixture
def served(tmp_path: Path) -> OctoTestAppliance:
    octo = _appliance(tmp_path, cached=True)
    yield octo
    octo.client.close()
    octo.appliance.close()


def _signing_key_at_registration(octo: OctoTestAppliance) -> str:
    env = octo.api.post("/environments", json={"name": "Dev"})
    assert env.status_code == 201, env.text
    identity = generate_identity("agent-1")
    registered = octo.api.post(
        "/targets/register",
        json={
            "name": f"agent-{secrets.token_hex(3)}",
            "environments": ["Dev"],
            "roles": ["web"],
            "communication_style": "polling",
            "thumbprint": thumbprint_of_pem(identity.cert_pem),
            "certificate": identity.cert_pem.decode(),
        },
    )
    assert registered.status_code == 201, registered.text
    return str(registered.json()["signing_public_key"])


def test_the_agent_manifest_is_signed_with_the_key_registration_hands_out(
    served: OctoTestAppliance,
) -> None:
    public_key = _signing_key_at_registration(served)
    anonymous = served.api.as_key(None)

    answer = anonymous.get("/agent", params={"platform": LINUX_X86_64})

    assert answer.status_code == 200, answer.text
    manifest = verify(answer.json(), public_key)
    assert manifest.component == "octo-agent"
    assert (manifest.platform, manifest.version) == (LINUX_X86_64, "0.1.0")
    assert manifest.size == len(STAND_IN)
    assert manifest.sha256 == hashlib.sha256(STAND_IN).hexdigest()
    download = anonymous.get("/agent/download", params={"platform": LINUX_X86_64})
    assert download.status_code == 200
    assert download.content == STAND_IN
    assert download.headers["x-sha256"] == manifest.sha256
    assert download.headers["content-type"] == "application/octet-stream"


def test_an_altered_manifest_does_not_verify(served: OctoTestAppliance) -> None:
    public_key = _signing_key_at_registration(served)
    manifest = served.api.as_key(None).get("/agent").json()

    for field, value in (("size", manifest["size"] + 1), ("version", "9.9.9")):
        with pytest.raises(ManifestError, match="does not verify"):
            verify(manifest | {field: value}, public_key)
    stranger = _appliance(served.appliance.data_dir.parent / "other", cached=False)
    try:
        with pytest.raises(ManifestError, match="does not verify"):
            verify(manifest, _signing_key_at_registration(stranger))
    finally:
        stranger.client.close()
        stranger.appliance.close()


def test_the_runner_manifest_carries_the_same_signature(served: OctoTestAppliance) -> None:
    public_key = _signing_key_at_registration(served)

    answer = served.api.get("/runner")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    manifest = verify(body, public_key)
    assert (manifest.component, manifest.platform) == ("octo-runner", "any")
    assert body["download"] == "/api/v1/runner/download"
    runner = served.api.get("/runner/download")
    assert hashlib.sha256(runner.content).hexdigest() == manifest.sha256


def test_an_unknown_platform_is_a_404_naming_the_ones_served(served: OctoTestAppliance) -> None:
    for path in ("/agent", "/agent/download"):
        answer = served.api.as_key(None).get(path, params={"platform": "windows-arm64"})

        assert answer.status_code == 404
        assert "windows-arm64" in answer.json()["error"]["message"]
        assert LINUX_X86_64 in answer.json()["error"]["hint"]


def test_no_build_and_no_building_on_request_is_a_503_with_a_hint(tmp_path: Path) -> None:
    octo = _appliance(tmp_path, cached=False)  # the test appliance never builds on request
    try:
        answer = octo.api.as_key(None).get("/agent")
    finally:
        octo.client.close()
        octo.appliance.close()

    assert answer.status_code == 503
    assert "retry-after" in answer.headers
    error = answer.json()["error"]
    assert "no octo-agent build" in error["message"]
    assert "build/build_agent.sh" in error["hint"]


def test_the_signing_key_is_sealed_and_survives_a_master_key_rotation(tmp_path: Path) -> None:
    octo = _appliance(tmp_path, cached=True)
    first = _signing_key_at_registration(octo)
    octo.client.close()
    octo.appliance.close()
    sealed = signing_key_path(tmp_path / "data")
    assert sealed.read_bytes().startswith(b"OCTOSEAL")
    key_id_before = key_id_of_file(sealed)

    command = [sys.executable, "-m", "octo_appliance", "master-key", "rotate"]
    rotated = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OCTO_")},
        timeout=300,
        check=False,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert key_id_of_file(sealed) != key_id_before  # re-wrapped under the new master key

    again = start_test_appliance(tmp_path / "data")
    try:
        manifest = again.api.as_key(None).get("/agent").json()
    finally:
        again.client.close()
        again.appliance.close()

    verify(manifest, first)
