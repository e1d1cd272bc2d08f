"""Package deployments end to end: a real appliance process, two listening and two polling
agents (one ``octo-agent run`` process holding all four homes) and the built-in worker,
everything through the REST API; packages built here, pushed to the feed, released, deployed.

What the targets did is read from their filesystems (files the package scripts write, the
journal) and what travelled from the task's per-target ``package`` records.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import Fleet, running_fleet, script_step

AGENTS = [
    ("web-l1", "listening"),
    ("web-l2", "listening"),
    ("web-p1", "polling"),
    ("web-p2", "polling"),
]
WEB = [name for name, _ in AGENTS]
DATA_BYTES = 3 * 1024 * 1024

PRE = 'echo "pre $(basename "$PWD")" >> "$PWD/order.txt"\n'
DEPLOY = 'echo deploy >> "$PWD/order.txt"\n'
POST = 'echo post >> "$PWD/order.txt"\n'


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("packages")) as fleet:
        for name, mode in AGENTS:
            fleet.register(name, mode, roles=("web",))
        fleet.start_agents(list(fleet.agents.values()), together=True)
        fleet.wait_connected(fleet.agents.values())
        yield fleet


# -- packages ------------------------------------------------------------------------------------


def app_zip(data: bytes, extra: dict[str, str] | None = None) -> bytes:
    """A package with a templated config file, a JSON settings file, the three convention
    scripts and ``data.bin`` (stored uncompressed, so a 1% change stays a 1% change)."""
    files = {
        "config/app.conf": "greeting=#{Greeting}\nmachine=#{Octo.Machine.Name}\n",
        "appsettings.json": json.dumps({"Logging": {"Level": "Warning"}, "Port": 80}),
        "PreDeploy.sh": PRE,
        "Deploy.sh": DEPLOY,
        "PostDeploy.sh": POST,
        **(extra or {}),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(zipfile.ZipInfo("data.bin"), data, compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


def push(fleet: Fleet, file_name: str, content: bytes, status: int = 201) -> dict[str, Any]:
    response = fleet.api().post(
        "/api/v1/packages",
        files={"file": (file_name, content, "application/octet-stream")},
        timeout=120,
    )
    assert response.status_code == status, response.text
    return dict(response.json())


def call(fleet: Fleet, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    response = fleet.api().request(method, "/api/v1" + path, **kwargs)
    assert response.status_code == status, f"{method} {path}: {response.text}"
    return response.json() if response.content else None


def install_step(name: str, package: str, **properties: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "deploy-package",
        "roles": ["web"],
        "properties": {"package": package, **properties},
    }


def project(fleet: Fleet, steps: list[dict[str, Any]], variables: list[dict[str, Any]]) -> str:
    created = call(fleet, "POST", "/projects", 201, json={"name": f"p-{secrets.token_hex(4)}"})
    call(fleet, "PUT", f"/projects/{created['id']}/process", json={"steps": steps})
    call(fleet, "PUT", f"/projects/{created['id']}/variables", json={"variables": variables})
    return str(created["id"])


def release(fleet: Fleet, project_id: str, **body: Any) -> dict[str, Any]:
    return dict(call(fleet, "POST", f"/projects/{project_id}/releases", 201, json=body))


def deploy(fleet: Fleet, release_id: str, **options: Any) -> dict[str, Any]:
    body = {"release": release_id, "environment": "Dev", **options}
    deployment = call(fleet, "POST", "/deployments", 201, json=body)
    return fleet.wait_task(deployment["task_id"], timeout=180)


def step_targets(task: dict[str, Any], step: str) -> dict[str, dict[str, Any]]:
    found = next(s for s in task["summary"]["steps"] if s["name"] == step)
    return {t["name"]: t for t in found["targets"]}


def journal(home: Path) -> list[dict[str, Any]]:
    path = home / "journal.json"
    if not path.exists():  # the built-in worker keeps it in state/, a dir of its account
        path = home / "state" / "journal.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    entries = data.get("entries", data) if isinstance(data, dict) else data
    return list(entries)


def worker_home(fleet: Fleet) -> Path:
    return fleet.server.worker_dir


def homes(fleet: Fleet) -> dict[str, Path]:
    found = {name: fleet.agents[name].home.root for name in WEB}
    found["appliance"] = worker_home(fleet)
    return found


def log_text(fleet: Fleet, task_id: str) -> str:
    return "\n".join(line["message"] for line in fleet.log(task_id))


# -- acceptance ----------------------------------------------------------------------------------


def test_deploy_conventions_journal_cache_and_delta(fleet: Fleet) -> None:
    package_id = f"MyApp{secrets.token_hex(2)}"
    data = os.urandom(DATA_BYTES)
    first = push(fleet, f"{package_id}.1.0.0.zip", app_zip(data))
    project_id = project(
        fleet,
        [
            install_step(
                "Install",
                package_id,
                substitute_files=["config/*.conf"],
                structured_variables=["appsettings.json"],
                # substituted by the runner as it runs, as Calamari does: the package paths
                # are known only there
                post_deploy='echo "cfg-post #{Octopus.Action.Package.InstallationDirectoryPath}'
                ' #{Greeting}" >> "$PWD/order.txt"',
            ),
            {
                **install_step("Install here", package_id),
                "properties": {
                    "package": package_id,
                    "run_on": "appliance",
                    "substitute_files": ["config/*.conf"],
                },
            },
            # a later step reads the install step's output as a port from Octopus would
            script_step(
                "Report",
                'echo "#{Octo.Machine.Name} installed at '
                '#{Octopus.Action[Install].Output.Package.InstallationDirectoryPath}"',
            ),
        ],
        [
            {"name": "Greeting", "value": "hello from #{Octo.Environment.Name}"},
            {"name": "Logging:Level", "value": "Debug"},
        ],
    )
    first_release = release(fleet, project_id)
    assert [(p["step"], p["version"]) for p in first_release["packages"]] == [
        ("Install", "1.0.0"),
        ("Install here", "1.0.0"),
    ]

    task = deploy(fleet, first_release["id"])
    assert task["state"] == "success", task["error"]
    for name, home in homes(fleet).items():
        entries = [e for e in journal(home) if e.get("package_id") == package_id]
        assert len(entries) == 1 and entries[0]["success"], (name, entries)
        folder = Path(entries[0]["extracted_to"])
        assert folder.is_dir() and str(folder).startswith(str(home)), folder
        conf = (folder / "config/app.conf").read_text()
        # the built-in worker is no machine: the reference stays as written (with a warning)
        machine = "#{Octo.Machine.Name}" if name == "appliance" else name
        assert conf == f"greeting=hello from Dev\nmachine={machine}\n", conf
        order = (folder / "order.txt").read_text().split()
        expected = ["pre", folder.name, "deploy", "post"]
        if name != "appliance":
            expected += ["cfg-post", str(folder), "hello", "from", "Dev"]
        assert order == expected, order
        if name != "appliance":  # structured replacement is configured on the agents' step
            settings = json.loads((folder / "appsettings.json").read_text())
            assert settings == {"Logging": {"Level": "Debug"}, "Port": 80}
    log = log_text(fleet, task["id"])
    for name, home in homes(fleet).items():
        if name != "appliance":
            [entry] = [e for e in journal(home) if e.get("package_id") == package_id]
            assert f"{name} installed at {entry['extracted_to']}" in log
    sent = step_targets(task, "Install")
    assert {n: t["package"]["mode"] for n, t in sent.items()} == dict.fromkeys(WEB, "full")
    assert all(t["package"]["bytes_sent"] == first["size"] for t in sent.values())

    # the same release again: nothing travels, the journal skips the install
    again = deploy(fleet, first_release["id"])
    assert again["state"] == "success", again["error"]
    sent = step_targets(again, "Install")
    assert {n: (t["package"]["mode"], t["package"]["bytes_sent"]) for n, t in sent.items()} == (
        dict.fromkeys(WEB, ("cached", 0))
    )
    assert "already installed" in log_text(fleet, again["id"])
    for name, home in homes(fleet).items():
        entries = [e for e in journal(home) if e.get("package_id") == package_id]
        assert len(entries) == 1, (name, entries)  # skipped: no new install

    # forced: reinstalled everywhere, scripts ran again
    forced = deploy(fleet, first_release["id"], force=True)
    assert forced["state"] == "success", forced["error"]
    for name, home in homes(fleet).items():
        entries = [e for e in journal(home) if e.get("package_id") == package_id]
        assert len(entries) == 2 and all(e["success"] for e in entries), (name, entries)
        order = (Path(entries[-1]["extracted_to"]) / "order.txt").read_text().split()
        assert order[2:4] == ["deploy", "post"]

    # a new version differing in 1% of its bytes travels as a small delta
    changed = bytearray(data)
    for offset in range(0, DATA_BYTES, DATA_BYTES // 30):
        changed[offset : offset + 1000] = os.urandom(1000)
    second = push(fleet, f"{package_id}.1.0.1.zip", app_zip(bytes(changed)))
    task = deploy(fleet, release(fleet, project_id)["id"])
    assert task["state"] == "success", task["error"]
    for name, target in step_targets(task, "Install").items():
        transfer = target["package"]
        assert transfer["mode"] == "delta", (name, transfer)
        assert transfer["base_version"] == "1.0.0"
        assert 0 < transfer["bytes_sent"] < second["size"] // 10, (name, transfer)
    log = log_text(fleet, task["id"])
    assert "delta" in log


# -- bad packages --------------------------------------------------------------------------------


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("ok.txt"), io.BytesIO(b""))
        for info, content in members:
            if content is not None:
                info.size = len(content)
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def zip_slip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fine.txt", "fine")
        archive.writestr("../../escaped-zip.txt", "out")
    return buffer.getvalue()


def absolute_tar() -> bytes:
    return tar_with([(tarfile.TarInfo("/tmp/octo-absolute-escape.txt"), b"abs")])


def symlink_tar() -> bytes:
    link = tarfile.TarInfo("etc-link")
    link.type = tarfile.SYMTYPE
    link.linkname = "../../../../../../etc"
    through = tarfile.TarInfo("etc-link/octo-through-link.txt")
    return tar_with([(link, None), (through, b"x")])


def corrupt_zip() -> bytes:
    """A zip whose directory is fine but whose data fails its CRC (the feed accepts it: only
    extraction reads the data)."""
    data = bytearray(b"A" * 4096)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("payload.txt", bytes(data))
    raw = bytearray(buffer.getvalue())
    at = raw.find(b"A" * 64)
    raw[at : at + 8] = b"CORRUPT!"
    return bytes(raw)


BAD = [
    ("zip", zip_slip, "escaped-zip.txt"),
    ("tar.gz", absolute_tar, "octo-absolute-escape.txt"),
    ("tar.gz", symlink_tar, "etc-link"),
    ("zip", corrupt_zip, "payload.txt"),
]


@pytest.mark.parametrize(("ext", "make", "entry"), BAD, ids=[b[1].__name__ for b in BAD])
def test_bad_packages_fail_naming_the_entry(fleet: Fleet, ext: str, make: Any, entry: str) -> None:
    package_id = f"Bad{secrets.token_hex(3)}"
    push(fleet, f"{package_id}.1.0.0.{ext}", make())
    project_id = project(fleet, [install_step("Install", package_id)], [])
    task = deploy(fleet, release(fleet, project_id)["id"])
    assert task["state"] == "failed"
    for name, target in step_targets(task, "Install").items():
        assert target["state"] == "failed", (name, target)
    log = log_text(fleet, task["id"])
    assert entry in log, log
    # nothing escaped: no file of the escaping entries anywhere, no link left pointing out
    assert not Path("/tmp/octo-absolute-escape.txt").exists()
    assert not Path("/etc/octo-through-link.txt").exists()
    for root in (fleet.root, fleet.data_dir):
        for path in root.rglob("*"):
            assert path.name not in ("escaped-zip.txt", "octo-absolute-escape.txt"), path
            if path.is_symlink():
                target = (path.parent / os.readlink(path)).resolve()
                assert str(target).startswith(str(path.parent.resolve())), path
    for name, home in homes(fleet).items():
        entries = [e for e in journal(home) if e.get("package_id") == package_id]
        assert all(not e.get("success") for e in entries), (name, entries)
