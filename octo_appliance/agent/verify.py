"""``octo-agent verify-manifest``: a downloaded build checked against its signed manifest.

The install script (``agent_bootstrap/agent.sh``) has only ``sh`` and ``curl``, which cannot
check an Ed25519 signature, so the agent it just downloaded checks itself: the manifest's
signature with the appliance's public key (served inside the script, fetched over the pinned
connection), then the file's size and SHA-256 against the signed fields. The script has already
compared size and SHA-256 before running the file at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from octo_appliance.builds.manifest import Manifest, ManifestError, verify


def verify_download(manifest_file: Path, public_key: str, download: Path) -> Manifest:
    """The verified manifest; :class:`ManifestError` naming what does not match."""
    try:
        fields = json.loads(manifest_file.read_text(encoding="utf-8"))
        data = download.read_bytes()
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read the manifest or the download: {exc}") from None
    if not isinstance(fields, dict):
        raise ManifestError("the manifest is not a JSON object")
    manifest = verify(fields, public_key)
    if len(data) != manifest.size or hashlib.sha256(data).hexdigest() != manifest.sha256:
        raise ManifestError(
            f"{download} is not the build the signed manifest describes",
            hint="download it again; do not run it",
        )
    return manifest
