"""A package ported from Octopus Deploy behaves as Calamari runs it (docs/conventions.md,
"Compared with Octopus Deploy"). Each case is data: the package's files, the step's
arguments, and what must (or must not) be found in the install directory and the release
folder afterwards. ``{install}``, ``{release}`` and ``{apps}`` in expected text stand for the
paths of this run."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conventions_support import Entry, file
from .deploy_support import Target, outputs, serve

RELEASE = Path("Dev") / "MyApp" / "1.4.0"


@dataclass(frozen=True)
class Case:
    id: str
    entries: list[Entry]
    #: step arguments besides the package; ``install_dir: True`` means "a fresh folder"
    arguments: dict[str, Any] = field(default_factory=dict)
    #: files already in the install directory before the deployment
    existing: dict[str, str] = field(default_factory=dict)
    success: bool = True
    #: relative path -> expected text, in the install directory / the release folder
    installed: dict[str, str] = field(default_factory=dict)
    released: dict[str, str] = field(default_factory=dict)
    #: relative paths that must not exist, in the install directory / the release folder
    not_installed: tuple[str, ...] = ()
    not_released: tuple[str, ...] = ()
    #: relative paths that must be executable in the install directory
    executable: tuple[str, ...] = ()
    outputs: dict[str, str] = field(default_factory=dict)


def sh(body: str, *, substitute: bool = False) -> dict[str, Any]:
    return {"syntax": "bash", "body": body, "substitute": substitute}


# Deploy.sh and PostDeploy.sh as an Octopus package has them: everything relative to ".".
DEPLOY_SH = """\
chmod +x ./run.sh
./run.sh > ./started.txt
pwd > ./deploy-cwd.txt
"""
POST_DEPLOY_SH = 'test -x ./run.sh && echo "post $(cat ./started.txt)" > ./post.txt\n'
APP = [
    file("run.sh", "#!/bin/sh\necho app-started\n", 0o644),
    file("Deploy.sh", DEPLOY_SH),
    file("PostDeploy.sh", POST_DEPLOY_SH),
]

CASES = [
    Case(
        "deploy-and-post-deploy-run-in-the-install-dir",
        APP,
        {
            "install_dir": True,
            "deploy": sh("pwd > ./cfg-deploy-cwd.txt"),
            "post_deploy": sh("echo cfg-post > ./cfg-post.txt"),
        },
        installed={
            "started.txt": "app-started\n",
            "deploy-cwd.txt": "{install}\n",
            "post.txt": "post app-started\n",
            "cfg-deploy-cwd.txt": "{install}\n",
            "cfg-post.txt": "cfg-post\n",
        },
        executable=("run.sh",),
        not_released=("started.txt", "post.txt", "cfg-post.txt", "deploy-cwd.txt"),
    ),
    Case(
        "without-install-dir-the-release-folder-is-the-current-directory",
        APP,
        released={"started.txt": "app-started\n", "deploy-cwd.txt": "{release}\n"},
    ),
    Case(
        "pre-deploy-runs-in-the-release-folder-before-the-copy",
        [file("PreDeploy.sh", "pwd > ./pre-cwd.txt\n")],
        {"install_dir": True, "pre_deploy": sh("echo cfg > ./order.txt")},
        # copied along with the rest of the release folder
        installed={"pre-cwd.txt": "{release}\n", "order.txt": "cfg\n"},
        released={"pre-cwd.txt": "{release}\n"},
    ),
    Case(
        "configured-pre-deploy-runs-before-the-package-script",
        [
            file("PreDeploy.sh", "echo pkg >> ./order.txt\n"),
            file("Deploy.sh", "echo pkg >> ./d.txt\n"),
        ],
        {"pre_deploy": sh("echo cfg >> ./order.txt"), "deploy": sh("echo cfg >> ./d.txt")},
        released={"order.txt": "cfg\npkg\n", "d.txt": "pkg\ncfg\n"},
    ),
    Case(
        "deploy-failed-runs-in-the-install-dir-after-the-copy",
        [file("DeployFailed.sh", "pwd > ./failed-cwd.txt\n")],
        {"install_dir": True, "deploy": sh("exit 4")},
        success=False,
        installed={"failed-cwd.txt": "{install}\n"},
        not_released=("failed-cwd.txt",),
    ),
    Case(
        "deploy-failed-runs-in-the-release-folder-before-the-copy",
        [file("DeployFailed.sh", "pwd > ./failed-cwd.txt\n")],
        {"install_dir": True, "pre_deploy": sh("exit 4")},
        success=False,
        released={"failed-cwd.txt": "{release}\n"},
        not_installed=("failed-cwd.txt",),
    ),
    Case(
        "only-the-preferred-package-script-runs",
        [
            file("Deploy.sh", "echo sh >> ./ran.txt\n"),
            file("Deploy.py", "open('ran.txt', 'a').write('py\\n')\n"),
            file("Deploy.ps1", "Add-Content ran.txt ps1\n"),
            file("PostDeploy.py", "open('post.txt', 'a').write('py\\n')\n"),
            file("PostDeploy.ps1", "Add-Content post.txt ps1\n"),
        ],
        released={"ran.txt": "sh\n", "post.txt": "py\n"},
    ),
    Case(
        "variables-calamari-sets-for-a-package-step",
        [
            file(
                "PostDeploy.sh",
                "for name in PackageId PackageVersion CustomInstallationDirectory; do\n"
                '  get_octopusvariable "Octopus.Action.Package.$name" >> ./vars.txt\n'
                "done\n"
                'agent="Octopus.Tentacle.Agent"\n'
                'get_octopusvariable "$agent.ApplicationDirectoryPath" >> ./vars.txt\n',
            ),
            file("version.txt", "#{Octopus.Action.Package.PackageVersion}\n"),
        ],
        {"install_dir": True, "substitute_files": ["version.txt"]},
        installed={
            "vars.txt": "MyApp\n1.4.0\n{install}\n{apps}\n",
            "version.txt": "1.4.0\n",
        },
    ),
    Case(
        "service-messages-written-with-encode-servicemessagevalue",
        [
            file(
                "Deploy.sh",
                "n=$(encode_servicemessagevalue Built)\n"
                "v=$(encode_servicemessagevalue 'yes: it is')\n"
                "echo \"##octopus[setVariable name='$n' value='$v']\"\n"
                'decode_servicemessagevalue "$v" > ./decoded.txt\n',
            )
        ],
        released={"decoded.txt": "yes: it is"},
        outputs={"Built": "yes: it is"},
    ),
    Case(
        "dollar-0-names-the-script-in-the-current-directory",
        [
            file(
                "Deploy.sh",
                'echo "$#" > ./argc.txt\nbasename "$0" > ./name.txt\n'
                'cd "$(dirname "$0")" && pwd > ./dir.txt\n',
            )
        ],
        {"install_dir": True, "post_deploy": sh('cd "$(dirname "$0")" && pwd > ./cfg-dir.txt')},
        installed={
            "argc.txt": "0\n",
            "name.txt": "Deploy.sh\n",
            "dir.txt": "{install}\n",
            "cfg-dir.txt": "{install}\n",
        },
    ),
    Case(
        "configured-scripts-are-substituted-as-they-run",
        [file("PreDeploy.sh", "set_octopusvariable FromPre yes\n")],
        {
            "install_dir": True,
            "pre_deploy": sh(
                "echo '#{Octopus.Action.Package.InstallationDirectoryPath}' > ./pre.txt",
                substitute=True,
            ),
            "deploy": sh(
                "echo '#{Octopus.Action.Package.InstallationDirectoryPath} #{FromPre}"
                " ##{Literal}' > ./deploy.txt",
                substitute=True,
            ),
        },
        installed={"pre.txt": "{release}\n", "deploy.txt": "{install} yes #{{Literal}}\n"},
    ),
    Case(
        "an-unresolved-reference-fails-the-configured-script-before-it-runs",
        [
            file(
                "DeployFailed.sh", 'echo "$(get_octopusvariable Octo.Deployment.Error)" > ./e.txt\n'
            )
        ],
        {"deploy": sh("touch ./ran.txt; echo #{Nowhere}", substitute=True)},
        success=False,
        released={
            "e.txt": "the Deploy script was not run: unresolved variable reference(s): Nowhere"
            " (define these variables for this scope, or escape a literal as ##{{Name}})\n"
        },
        not_released=("ran.txt",),
    ),
    Case(
        "purge-keeps-what-purge-exclusions-match",
        [file("app.txt", "new")],
        {"install_dir": True, "purge": True, "purge_exclusions": ["logs/**", "*.db"]},
        existing={"logs/app.log": "log", "state.db": "db", "old.txt": "old", "tmp/x": "x"},
        installed={"app.txt": "new", "logs/app.log": "log", "state.db": "db"},
        not_installed=("old.txt", "tmp"),
    ),
    Case(
        "a-deploy-script-saved-with-windows-line-endings",
        [
            file("run.sh", "#!/bin/sh\necho ok\n", 0o644),
            file("Deploy.sh", "chmod +x ./run.sh\r\nset_octopusvariable Mode crlf\r\n"),
        ],
        {"install_dir": True},
        executable=("run.sh",),
        outputs={"Mode": "crlf"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_ported_package(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = Target(tmp_path / "target")
    install = tmp_path / "opt" / "app"
    arguments = {"substitute_files": [], "structured_variables": [], **case.arguments}
    if arguments.get("install_dir") is True:
        arguments["install_dir"] = str(install)
    for name, text in case.existing.items():
        (install / name).parent.mkdir(parents=True, exist_ok=True)
        (install / name).write_text(text)
    done = serve(target.request(target.package(case.entries), **arguments), monkeypatch)
    assert done.result["success"] is case.success, done.result
    release = target.apps / RELEASE
    paths = {"install": install, "release": release, "apps": target.apps}
    for root, expected in ((install, case.installed), (release, case.released)):
        for name, text in expected.items():
            assert (root / name).read_text() == text.format(**paths), name
    for root, absent in ((install, case.not_installed), (release, case.not_released)):
        for name in absent:
            assert not (root / name).exists(), f"{root / name} exists"
    for name in case.executable:
        assert os.access(install / name, os.X_OK), name
    produced = outputs(done)
    for name, value in case.outputs.items():
        assert produced.get(name) == value, name


def test_the_release_folder_keeps_the_package_as_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``chmod +x ./run.sh`` in Deploy.sh changes the installed copy, not the release."""
    target = Target(tmp_path / "target")
    install = tmp_path / "opt" / "app"
    request = target.request(
        target.package(APP), substitute_files=[], structured_variables=[], install_dir=str(install)
    )
    assert serve(request, monkeypatch).result["success"]
    mode = (target.apps / RELEASE / "run.sh").stat().st_mode
    assert stat.S_IMODE(mode) == 0o644
