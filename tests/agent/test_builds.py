"""The agent's build state and checks (agent/builds.py) and its supervisor (agent/supervisor.py),
with real files and real supervisor processes; stand-in builds are small Python scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from octo_appliance.agent.builds import RESTART_FOR_UPDATE, Builds, check_file, check_manifest
from octo_appliance.agent.cache import sha256_file
from octo_appliance.agent.errors import AgentError
from octo_appliance.comms import generate_identity
from tests.agent.support import make_home
from tests.update_support import Signer


def _build(path: Path, code: str) -> Path:
    path.write_text(f"#!{sys.executable}\nimport os, sys\n{code}\n")
    path.chmod(0o755)
    return path


def test_a_signed_manifest_passes_and_any_change_to_it_fails(tmp_path: Path) -> None:
    signer = Signer()
    build = _build(tmp_path / "b", "pass")
    manifest = signer.manifest(build, "2.0.0")
    check_manifest(manifest, signer.public_key)
    for field, value in (("version", "2.0.1"), ("size", 1), ("sha256", "0" * 64)):
        with pytest.raises(AgentError, match="does not verify"):
            check_manifest({**manifest, field: value}, signer.public_key)
    with pytest.raises(AgentError, match="does not verify"):
        check_manifest(manifest, Signer().public_key)
    with pytest.raises(AgentError, match="no signing key"):
        check_manifest(manifest, "")


def test_a_file_that_is_not_what_the_manifest_says_is_refused(tmp_path: Path) -> None:
    build = _build(tmp_path / "b", "pass")
    manifest = Signer().manifest(build, "2.0.0")
    check_file(build, manifest, sha256_file(build))
    with pytest.raises(AgentError, match="bytes"):
        check_file(build, {**manifest, "size": 1}, sha256_file(build))
    with pytest.raises(AgentError, match="SHA-256"):
        check_file(build, manifest, "0" * 64)


def test_stage_confirm_and_roll_back_move_the_state(tmp_path: Path) -> None:
    builds = Builds(tmp_path / "builds")
    signer = Signer()
    for version in ("2.0.0", "3.0.0"):
        download = _build(tmp_path / f"dl-{version}", "pass")
        builds.stage(download, signer.manifest(download, version), 30)
        assert (builds.read().trial or {}).get("version") == version
        assert builds.confirm(version)
    state = builds.read()
    assert state.current is not None and state.current["version"] == "3.0.0"
    assert state.previous is not None and state.previous["version"] == "2.0.0"
    assert not builds.confirm("3.0.0")  # no trial: nothing to confirm

    download = _build(tmp_path / "dl-4", "pass")
    staged = builds.stage(download, signer.manifest(download, "4.0.0"), 30)
    failed = builds.roll_back("it broke")
    assert failed is not None and failed["version"] == "4.0.0" and failed["reason"] == "it broke"
    assert not staged.exists()
    state = builds.read()
    assert state.trial is None and (state.current or {}).get("version") == "3.0.0"
    assert sorted(p.name for p in builds.directory.glob("octo-agent-*")) == [
        "octo-agent-2.0.0",
        "octo-agent-3.0.0",
    ]


def _supervise(tmp_path: Path, state: dict[str, object]) -> tuple[int, Builds]:
    appliance = generate_identity("appliance")
    home = make_home(tmp_path / "home", name="web", mode="polling", appliance=appliance)
    home.ensure()
    builds = Builds(home.builds_dir)
    builds.state_file.write_text(json.dumps(state))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTO_")}
    done = subprocess.run(
        [sys.executable, "-m", "octo_appliance.agent", "run", "--supervise", "--home", home.root],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.returncode, builds


def test_a_trial_that_exits_is_rolled_back_to_the_previous_build(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    bad = _build(tmp_path / "bad", "sys.exit(3)")
    # the current build "stages" the bad one and asks for the restart, then exits 0 next time
    good = _build(
        tmp_path / "good",
        f"""
runs = {str(runs)!r}
count = len(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "a").write("x")
if count == 0:
    from octo_appliance.agent.builds import Builds
    home = sys.argv[sys.argv.index("--home") + 1]
    with Builds(__import__("pathlib").Path(home) / "builds").locked() as state:
        state.trial = {{"version": "2", "sha256": "", "command": [{str(bad)!r}],
                        "confirm_seconds": 30}}
    assert os.environ["OCTO_AGENT_SUPERVISED"] == "1"
    sys.exit({RESTART_FOR_UPDATE})
""",
    )
    _, builds = _supervise(tmp_path, {"current": {"version": "1", "command": [str(good)]}})
    state = builds.read()
    assert state.trial is None and state.current == {"version": "1", "command": [str(good)]}
    assert state.failed is not None and state.failed["version"] == "2"
    assert state.failed["reason"] == "the new build exited with code 3 before it confirmed"
    assert runs.read_text() == "xx"  # the previous build ran again after the rollback


def test_a_trial_left_over_at_start_counts_as_failed(tmp_path: Path) -> None:
    good = _build(tmp_path / "good", "sys.exit(0)")
    never = _build(tmp_path / "never", "raise SystemExit('must not run')")
    trial = {"version": "2", "sha256": "", "command": [str(never)], "confirm_seconds": 30}
    _, builds = _supervise(
        tmp_path, {"current": {"version": "1", "command": [str(good)]}, "trial": trial}
    )
    failed = builds.read().failed
    assert failed is not None and "restarted before the new build confirmed" in failed["reason"]
