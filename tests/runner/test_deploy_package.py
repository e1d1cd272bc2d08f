"""``deploy-package`` and ``retention`` end to end: real archives in a real cache, real
scripts, the runner in-process (``serve``) and as the built zipapp in a subprocess."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from .conftest import RunRunner, StartRunner
from .conventions_support import Entry, file, symlink, tree
from .conventions_support import folder as folder_entry
from .deploy_support import SECRET, Target, configured, outputs, serve
from .support import finish, make_request, old_python, result_event, wait_for_file

PRE_DEPLOY_SH = """\
order=$(get_octovariable OrderFile)
installed=$(get_octovariable Octo.Action.Package.InstallationDirectoryPath)
echo "pkg-pre $(basename "$PWD") $installed" >> "$order"
echo "pre-sees $(head -n 1 config/app.conf)" >> "$order"
set_octovariable FromPre yes
"""
DEPLOY_PY = """\
import octo
conf = open("config/app.conf").read().splitlines()[0]
line = " ".join(["pkg-deploy", octo.get_variable("Octo.Action.Package.InstallationDirectoryPath"),
                 conf, octo.get_variable("FromPre", "-")])
with open(octo.get_variable("OrderFile"), "a") as f:
    f.write(line + "\\n")
"""
POST_DEPLOY_SH = 'echo pkg-post >> "$(get_octovariable OrderFile)"\n'
DEPLOY_FAILED_SH = (
    'echo "failed: $(get_octovariable Octo.Deployment.Error)" >> "$(get_octovariable OrderFile)"\n'
)

APP: list[Entry] = [
    file(
        "config/app.conf", "greeting=#{Greeting}\nenv=#{Octo.Environment.Name}\npw=#{DbPassword}\n"
    ),
    file("appsettings.json", json.dumps({"Logging": {"Level": "Warning"}, "Port": 80}, indent=2)),
    file("notes.txt", "untouched #{Greeting}\n"),
    file("PreDeploy.sh", PRE_DEPLOY_SH, 0o644),
    file("Deploy.py", DEPLOY_PY),
    file("PostDeploy.sh", POST_DEPLOY_SH),
    file("DeployFailed.sh", DEPLOY_FAILED_SH),
    file("bin/start.sh", "#!/bin/sh\necho start\n", 0o755),
    symlink("start", "bin/start.sh"),
]


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return Target(tmp_path / "target")


def test_the_conventions_in_order(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dir = tmp_path / "opt" / "app"
    install_dir.mkdir(parents=True)
    (install_dir / "stale.txt").write_text("from an older release")
    request = target.request(
        target.package(APP),
        install_dir=str(install_dir),
        purge=True,
        pre_deploy=configured("cfg-pre"),
        deploy=configured("cfg-deploy"),
        post_deploy=configured("cfg-post"),
    )
    done = serve(request, monkeypatch)
    release = target.apps / "Dev" / "MyApp" / "1.4.0"
    assert done.result == result_event(
        0,
        f"Installed MyApp 1.4.0 to {install_dir}",
        extracted_to=str(release),
        installed_to=str(install_dir),
        skipped=False,
    )
    assert target.order_lines() == [
        "cfg-pre #{Greeting}",  # Calamari's order: the configured PreDeploy script first
        f"pkg-pre 1.4.0 {release}",
        "pre-sees greeting=#{Greeting}",  # PreDeploy runs before substitution
        f"pkg-deploy {install_dir} greeting=hello yes",
        "cfg-deploy #{Greeting}",
        "pkg-post",
        "cfg-post #{Greeting}",
    ]
    conf = f"greeting=hello\nenv=Dev\npw={SECRET}\n"
    assert (release / "config/app.conf").read_text() == conf
    assert (release / "notes.txt").read_text() == "untouched #{Greeting}\n"
    settings = json.loads((release / "appsettings.json").read_text())
    assert settings == {"Logging": {"Level": "Debug"}, "Port": 8080}
    assert tree(install_dir) == tree(release)  # purged, then copied
    assert os.access(install_dir / "bin/start.sh", os.X_OK)
    assert outputs(done) == {
        "FromPre": "yes",
        "Package.InstallationDirectoryPath": str(install_dir),
        "Package.ExtractedPath": str(release),
    }
    [entry] = target.entries()
    assert entry == {
        "project": "Shop",
        "project_id": "prj_1",
        "environment": "Dev",
        "package_id": "MyApp",
        "version": "1.4.0",
        "sha256": request["arguments"]["package"]["sha256"],
        "release": "1.0",
        "deployment_id": "dep_1",
        "extracted_to": str(release),
        "installed_to": str(install_dir),
        "installed_at": entry["installed_at"],
        "success": True,
    }
    assert entry["installed_at"].endswith("Z")
    logs = done.logs()
    assert "Substituted variables in 1 of 1 file(s): config/app.conf" in logs
    assert "Replaced 2 key(s) in appsettings.json: Logging:Level, Port" in logs
    assert any(m.startswith("Extracted 11 entries (8 files, 2 folders, 1 links)") for m in logs)
    assert f"Copied 8 files and 1 links to {install_dir}" in logs
    assert SECRET not in done.raw_stdout  # the substituted secret never reaches the log


def test_journal_skip_force_and_release_folders(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = target.package(APP)
    first = serve(target.request(package), monkeypatch)
    assert first.result["success"], first.result
    folder = target.apps / "Dev" / "MyApp" / "1.4.0"
    (target.root / "order.txt").unlink()

    again = serve(target.request(package), monkeypatch)
    assert again.result["success"] and again.result["skipped"] is True
    assert "already installed by release 1.0 in Dev" in again.result["message"]
    assert again.result["extracted_to"] == again.result["installed_to"] == str(folder)
    assert outputs(again)["Package.ExtractedPath"] == str(folder)
    assert target.order_lines() == []  # no script ran
    assert len(target.entries()) == 1

    forced = serve(target.request(package, force=True), monkeypatch)
    assert forced.result["skipped"] is False
    assert forced.result["extracted_to"] == f"{folder}_1"

    other_release = serve(target.request(package, release="2.0"), monkeypatch)
    assert other_release.result["extracted_to"] == f"{folder}_2"

    assert [(e["release"], e["extracted_to"]) for e in target.entries()] == [
        ("1.0", str(folder)),
        ("1.0", f"{folder}_1"),
        ("2.0", f"{folder}_2"),
    ]
    assert len(target.order_lines()) == 2 * 4  # four package script lines per install


def test_a_vanished_release_folder_is_installed_again(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = target.package([file("a.txt", "A")])
    serve(target.request(package, substitute_files=[], structured_variables=[]), monkeypatch)
    folder = target.apps / "Dev" / "MyApp" / "1.4.0"
    (folder / "a.txt").unlink()
    folder.rmdir()
    done = serve(target.request(package, substitute_files=[], structured_variables=[]), monkeypatch)
    assert done.result["skipped"] is False and (folder / "a.txt").read_text() == "A"


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz", "tgz"])
def test_every_format(target: Target, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    done = serve(target.request(target.package(APP, fmt)), monkeypatch)
    assert done.result["success"], done.result
    release = Path(done.result["extracted_to"])
    assert tree(release)["start"] == "-> bin/start.sh"
    assert (release / "config/app.conf").read_text().startswith("greeting=hello\n")


def test_a_failure_runs_deploy_failed_and_is_journaled(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy = {"syntax": "bash", "body": "echo broken >&2; exit 3"}
    done = serve(target.request(target.package(APP), deploy=deploy), monkeypatch)
    assert done.exit_code == 3
    assert done.result["success"] is False
    assert done.result["message"] == "the Deploy script failed with exit code 3"
    lines = target.order_lines()
    assert lines[-1] == "failed: the Deploy script failed with exit code 3"
    assert "pkg-post" not in lines  # PostDeploy never ran
    assert [e["success"] for e in target.entries()] == [False]
    assert "Package.ExtractedPath" in outputs(done)


def test_a_convention_error_runs_deploy_failed(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [*APP, file("config/bad.conf", "#{if Greeting}never closed")]
    done = serve(target.request(target.package(entries)), monkeypatch)
    assert done.exit_code == 1
    assert "cannot substitute variables in config/bad.conf" in done.result["message"]
    assert target.order_lines()[-1].startswith("failed: cannot substitute variables")


def test_a_script_can_skip_the_remaining_conventions(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre = {"syntax": "bash", "body": "set_octovariable Octo.Action.SkipRemainingConventions True"}
    done = serve(target.request(target.package(APP), pre_deploy=pre), monkeypatch)
    assert done.result["success"] is True
    assert "a script skipped the remaining conventions" in done.result["message"]
    release = Path(done.result["extracted_to"])
    assert (release / "config/app.conf").read_text().startswith("greeting=#{Greeting}")
    # the configured PreDeploy script runs first (Calamari's order), so nothing else ran
    assert target.order_lines() == []
    assert any("skipping substitute files, structured variables" in m for m in done.logs())
    assert [e["success"] for e in target.entries()] == [True]


def test_an_unsafe_package_installs_nothing(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = target.package([file("ok.txt"), file("../../escaped.txt", "x")], "tar")
    done = serve(target.request(package), monkeypatch)
    assert done.exit_code == 1
    assert "unsafe entry '../../escaped.txt'" in done.result["message"]
    assert done.result["extracted_to"] is None
    assert list((target.apps / "Dev" / "MyApp").iterdir()) == []
    assert not (target.root / "escaped.txt").exists()
    assert not (target.apps / "escaped.txt").exists()
    assert target.entries() == []


@pytest.mark.parametrize("key", ["cache_dir", "applications_dir", "journal_file"])
def test_missing_context_is_bad_input(
    target: Target, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = target.request(target.package(APP))
    del request["context"][key]
    done = serve(request, monkeypatch)
    assert done.exit_code == 2
    assert done.result["message"].startswith(
        f"deploy-package: the request context has no {key!r} (an absolute path)"
    )
    assert not target.apps.exists()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"context": {"applications_dir": "relative/apps"}},
            "'applications_dir' must be an absolute",
        ),
        ({"variables": {"Octo.Environment.Name": ""}}, "variable Octo.Environment.Name is missing"),
        ({"arguments": {"install_dir": "opt/app"}}, "'install_dir' must be an absolute path"),
        ({"arguments": {"substitute_files": ["../etc/*"]}}, "must stay inside the package"),
        ({"arguments": {"substitute_files": "config/*"}}, "must be a list of file patterns"),
        ({"arguments": {"keep_releases": 0}}, "'keep_releases' must be a whole number >= 1"),
        ({"arguments": {"deploy": {"syntax": "cobol", "body": "x"}}}, "'syntax' must be one of"),
        ({"package": {"sha256": "xyz"}}, "'sha256' must be 64 hexadecimal digits"),
        ({"package": {"format": "rar"}}, "'format' must be one of zip, tar, tar.gz, tgz"),
    ],
)
def test_bad_requests(
    target: Target, change: dict[str, Any], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = {**target.package(APP), **change.get("package", {})}
    request = target.request(
        package, variables=change.get("variables"), **change.get("arguments", {})
    )
    request["context"].update(change.get("context", {}))
    done = serve(request, monkeypatch)
    assert done.exit_code == 2, done.result
    assert fragment in done.result["message"]


def test_missing_or_damaged_packages(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    package = target.package(APP)
    cached = target.cache / package["sha256"]
    cached.write_bytes(cached.read_bytes() + b"x")
    done = serve(target.request({**package, "size": cached.stat().st_size - 1}), monkeypatch)
    assert done.exit_code == 1
    assert "(it is damaged)" in done.result["message"]
    cached.unlink()
    done = serve(target.request(package), monkeypatch)
    assert "is not in the cache" in done.result["message"]
    assert target.entries() == []


def test_keep_releases_applies_retention_after_a_success(
    target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    shas = []
    for number in range(4):
        package = target.package([file("v.txt", str(number))], version=f"1.{number}.0")
        shas.append(package["sha256"])
        done = serve(
            target.request(
                package,
                release=f"{number}.0",
                keep_releases=2,
                substitute_files=[],
                structured_variables=[],
            ),
            monkeypatch,
        )
        assert done.result["success"], done.result
    assert sorted(p.name for p in (target.apps / "Dev" / "MyApp").iterdir()) == ["1.2.0", "1.3.0"]
    assert [e["release"] for e in target.entries()] == ["2.0", "3.0"]
    assert sorted(p.name for p in target.cache.iterdir()) == sorted(shas[2:])


# ---- the built zipapp ---------------------------------------------------------------------


def _pythons() -> list[str | None]:
    old = old_python()
    return [None, old] if old else [None]


@pytest.mark.parametrize("python", _pythons(), ids=lambda p: "default" if p is None else "old")
def test_through_the_zipapp(target: Target, run_runner: RunRunner, python: str | None) -> None:
    first = target.package(APP, "tgz")
    done = run_runner(target.request(first, keep_releases=1), python=python)
    assert done.exit_code == 0, (done.result, done.stderr)
    release = target.apps / "Dev" / "MyApp" / "1.4.0"
    assert (release / "config/app.conf").read_text().startswith("greeting=hello\n")
    assert target.order_lines()[-1] == "pkg-post"

    # the retention command, with its own arguments
    other = target.package([file("x.txt")], version="2.0.0")
    done = run_runner(target.request(other, release="2.0", substitute_files=[]), python=python)
    assert done.exit_code == 0, done.result
    request = make_request("retention", {"project": "Shop", "keep": 1}, context=target.context())
    done = run_runner(request, python=python)
    assert done.result == result_event(
        0,
        "Retention for Shop: kept 1 and removed 1 installation(s)",
        kept=1,
        removed=1,
        deleted_folders=[str(release)],
        deleted_packages=[first["sha256"]],
    )
    assert not release.exists() and not (target.cache / first["sha256"]).exists()
    assert [e["version"] for e in target.entries()] == ["2.0.0"]


def test_retention_needs_its_arguments(target: Target, run_runner: RunRunner) -> None:
    done = run_runner(make_request("retention", {"project": "Shop"}, context=target.context()))
    assert done.exit_code == 2
    assert "retention: argument 'keep' must be a whole number >= 1" in done.result["message"]


def test_cancel_during_a_script(target: Target, start_runner: StartRunner) -> None:
    marker = target.root / "started"
    deploy = {"syntax": "bash", "body": f"echo started > '{marker}'; sleep 60"}
    proc = start_runner(target.request(target.package(APP), deploy=deploy))
    wait_for_file(marker)
    proc.send_signal(signal.SIGTERM)
    done = finish(proc)
    assert done.exit_code == 143
    assert done.result["canceled"] is True and done.result["success"] is False
    assert not any(line.startswith("failed:") for line in target.order_lines())
    assert [e["success"] for e in target.entries()] == [False]


def test_folder_entries_in_the_package(target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    package = target.package([folder_entry("empty"), file("a/b.txt", "B")], "tar")
    done = serve(target.request(package, substitute_files=["**/*.txt"]), monkeypatch)
    assert done.result["success"], done.result
    assert tree(Path(done.result["extracted_to"])) == {"a": "/", "a/b.txt": "B", "empty": "/"}


def test_scripts_see_no_helper_folder_in_the_release(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    listing = tmp_path / "listing.txt"
    request = target.request(
        target.package(APP), deploy={"syntax": "bash", "body": f"ls -A > '{listing}'"}
    )
    request["work_dir"] = str(work_dir)
    done = serve(request, monkeypatch)
    assert done.exit_code == 0, done.result
    names = listing.read_text().split()
    assert "config" in names
    assert not [name for name in names if name.startswith(".octo-")], names
