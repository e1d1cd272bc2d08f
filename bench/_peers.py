"""The floor and the peers of ``bench/fanout.py``: a plain shell loop, Ansible and pyinfra.

Each tool gets its own N target directories (``<root>/<tool>/t001`` ...) and does the job of
``bench/_job.py`` on them: copy the package in (skipped when it is already there: the floor
tests for the file, Ansible's ``copy`` and pyinfra's ``files.put`` compare checksums), then
:func:`_job.install_command`. Each run is one process start of the tool, timed from start
to exit; its output goes to a log file under the root, shown when a run fails.

The peers come from PyPI into ``bench/.peers-venv`` (kept between bench runs, gitignored),
pinned to versions that install on this Python. pyinfra's ``@local`` connector allows one
host, so the venv also gets ``bench/_pyinfra_local_targets.py`` as a connector plugin that
names N local hosts (``@localtarget/t001``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from _job import EXTRACT_DIR, PACKAGE_FILE, Package, check_target, empty_dir, install_command

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".peers-venv"
#: the newest releases that install on Python 3.11 (ansible-core 2.20 needs 3.12)
PINS = {"ansible-core": "2.19.14", "pyinfra": "3.10.0"}
CONNECTOR_MODULE = BENCH / "_pyinfra_local_targets.py"
CONNECTOR_DIST = "octo-bench-pyinfra-local-targets"
RUN_TIMEOUT = 1800.0
#: the interpreter the floor and the peers extract with: the one Octo's agents and runners use
PYTHON = shlex.quote(sys.executable)


class ToolFailed(Exception):
    """A run of a tool failed; the message says what and where its output is."""


# -- the virtualenv -------------------------------------------------------------------------


def _connector_version() -> str:
    """The plugin's version carries a hash of its source, so an edit reinstalls it."""
    digest = hashlib.sha256(CONNECTOR_MODULE.read_bytes()).hexdigest()[:10]
    return f"1.0+{digest}"


def _installed(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    names = [*PINS, CONNECTOR_DIST]
    done = subprocess.run(
        [str(python), "-c", script, *names], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def _pip(python: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(
            f"pip install {' '.join(args)} into {VENV} failed:\n{done.stderr[-3000:]}\n"
            f"check that PyPI is reachable, or delete {VENV} and run again"
        )


def _install_connector(python: Path, build_root: Path) -> None:
    """Install the connector module as a distribution with a ``pyinfra.connectors`` entry."""
    build = build_root / "pyinfra-connector"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    shutil.copy(CONNECTOR_MODULE, build / CONNECTOR_MODULE.name)
    module = CONNECTOR_MODULE.stem
    (build / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        f'name = "{CONNECTOR_DIST}"\n'
        f'version = "{_connector_version()}"\n\n'
        '[project.entry-points."pyinfra.connectors"]\n'
        f'localtarget = "{module}:LocalTargetConnector"\n\n'
        "[tool.setuptools]\n"
        f'py-modules = ["{module}"]\n',
        encoding="utf-8",
    )
    _pip(python, str(build))


def ensure_venv(build_root: Path) -> dict[str, str]:
    """Create or update ``bench/.peers-venv``; the installed versions of the peers."""
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"  creating {VENV} (python -m venv) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    versions = _installed(python)
    wanted = [f"{name}=={version}" for name, version in PINS.items()]
    if any(versions.get(name) != version for name, version in PINS.items()):
        print(f"  pip install {' '.join(wanted)} ...", flush=True)
        _pip(python, *wanted)
    if versions.get(CONNECTOR_DIST) != _connector_version():
        _install_connector(python, build_root)
    versions = _installed(python)
    return {name: versions.get(name, "?") for name in PINS}


# -- the tools ------------------------------------------------------------------------------


def kill_tree(pid: int) -> None:
    """SIGKILL a tool's process and everything it started (its workers, their scripts)."""
    try:
        root = psutil.Process(pid)
        processes = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


class LocalTool:
    """N target directories under ``root/<name>`` and the timing of one run on the first n."""

    name = ""

    def __init__(self, root: Path, count: int, package: Package) -> None:
        self.root = root / self.name
        self.package = package
        self.targets = [self.root / "targets" / f"t{i:03d}" for i in range(1, count + 1)]
        for target in self.targets:
            target.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def reset(self, n: int, cold: bool) -> None:
        """Untimed, before a run: cold empties the targets; warm only removes the last
        extraction (each run extracts into a fresh folder, as Octo does)."""
        for target in self.targets[:n]:
            if cold:
                empty_dir(target)
            else:
                shutil.rmtree(target / EXTRACT_DIR, ignore_errors=True)

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def run(self, n: int) -> float:
        """One timed run on the first ``n`` targets, then the check of every target."""
        args, env = self.command(n)
        self.runs += 1
        log = self.root / f"run-{self.runs:03d}-n{n}.log"
        started = time.perf_counter()
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                cwd=self.root,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                code = process.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                kill_tree(process.pid)
                raise ToolFailed(f"{self.name} did not finish in {RUN_TIMEOUT:g} s") from None
        elapsed = time.perf_counter() - started
        if code != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise ToolFailed(f"{self.name} exited {code} (N={n}); end of {log}:\n{tail}")
        for target in self.targets[:n]:
            problem = check_target(target, self.package)
            if problem:
                raise ToolFailed(f"{self.name} (N={n}) did not do the job: {problem}")
        return elapsed


class Floor(LocalTool):
    """No orchestrator: bash starts every target's copy + install at once and waits. Each
    target's job gets its own session (``setsid``), as Octo's runners and Ansible's workers
    do, so all tools get the same share of a busy machine (the scheduler's autogroups)."""

    name = "floor"
    JOB = 'd=$1; if [ ! -e "$d/@PACKAGE@" ]; then cp "$2" "$d/@PACKAGE@" || exit 1; fi; @INSTALL@'
    LOOP = (
        "job=$1; src=$2; shift 2; pids=()\n"
        'for d in "$@"; do setsid -w bash -c "$job" job "$d" "$src" & pids+=($!); done\n'
        'rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; exit $rc\n'
    )

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        job = self.JOB.replace("@PACKAGE@", PACKAGE_FILE)
        job = job.replace("@INSTALL@", install_command('"$d"', PYTHON))
        dirs = [str(t) for t in self.targets[:n]]
        return ["bash", "-c", self.LOOP, "floor", job, str(self.package.path), *dirs], {}


class Ansible(LocalTool):
    """``ansible-playbook -f N``: N inventory hosts, ``ansible_connection=local`` each;
    ``copy`` then ``shell``; facts not gathered, pipelining on (its fastest usual setup)."""

    name = "ansible"

    def __init__(self, root: Path, count: int, package: Package) -> None:
        super().__init__(root, count, package)
        home = self.root / "home"
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        self.config = self.root / "ansible.cfg"
        self.config.write_text(
            "[defaults]\n"
            f"home = {home}\n"
            f"local_tmp = {home / 'tmp'}\n"
            f"remote_tmp = {home / 'tmp'}\n"
            f"interpreter_python = {VENV / 'bin' / 'python'}\n"
            "retry_files_enabled = False\n"
            "nocolor = True\n"
            "gathering = explicit\n\n"
            "[connection]\n"
            "pipelining = True\n",
            encoding="utf-8",
        )
        play = [
            {
                "hosts": "targets",
                "gather_facts": False,
                "tasks": [
                    {
                        "name": "Copy the package",
                        "ansible.builtin.copy": {
                            "src": str(package.path),
                            "dest": "{{ target_dir }}/" + PACKAGE_FILE,
                        },
                    },
                    {
                        "name": "Install",
                        "ansible.builtin.shell": {
                            "cmd": install_command("{{ target_dir | quote }}", PYTHON)
                        },
                    },
                ],
            }
        ]
        self.playbook = self.root / "play.yml"
        self.playbook.write_text(json.dumps(play, indent=1), encoding="utf-8")  # JSON is YAML

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        inventory = self.root / f"hosts-{n}.ini"
        lines = ["[targets]"]
        lines += [f"{t.name} ansible_connection=local target_dir={t}" for t in self.targets[:n]]
        inventory.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = [str(VENV / "bin" / "ansible-playbook"), "-i", str(inventory), "-f", str(n)]
        return [*args, str(self.playbook)], {"ANSIBLE_CONFIG": str(self.config)}


class Pyinfra(LocalTool):
    """``pyinfra -y --parallel N``: N ``@localtarget`` hosts; ``files.put`` then
    ``server.shell`` (with ``-y`` pyinfra skips its separate change-detection pass). The
    shell command runs under ``setsid -w``, in a session of its own as with the other tools
    (otherwise all of pyinfra's local commands stay in its one session, and N targets share
    one scheduler autogroup)."""

    name = "pyinfra"

    def __init__(self, root: Path, count: int, package: Package) -> None:
        super().__init__(root, count, package)
        self.deploy = self.root / "deploy.py"
        self.deploy.write_text(
            "import shlex\n"
            "from pyinfra import host\n"
            "from pyinfra.operations import files, server\n\n"
            "target = host.data.target_dir\n"
            f"files.put(name='Copy the package', src={str(package.path)!r},"
            f" dest=target + '/' + {PACKAGE_FILE!r})\n"
            f"install = {install_command('@TARGET@', PYTHON)!r}\n"
            "install = install.replace('@TARGET@', shlex.quote(target))\n"
            "server.shell(name='Install', commands=['setsid -w sh -c ' + shlex.quote(install)])\n",
            encoding="utf-8",
        )

    def command(self, n: int) -> tuple[list[str], dict[str, str]]:
        inventory = self.root / f"inventory_{n}.py"
        hosts = [(f"@localtarget/{t.name}", {"target_dir": str(t)}) for t in self.targets[:n]]
        inventory.write_text(f"targets = {hosts!r}\n", encoding="utf-8")
        args = [str(VENV / "bin" / "pyinfra"), "-y", "--parallel", str(n)]
        return [*args, inventory.name, self.deploy.name], {}


def describe_commands() -> dict[str, str]:
    """One line per tool for the bench's header: what exactly runs."""
    return {
        "floor": f"bash: N x setsid ( [ -e pkg ] || cp; {install_command('$d', 'python')} ) &,"
        " wait",
        "ansible": "ansible-playbook -f N (copy + shell, local connection, pipelining)",
        "pyinfra": "pyinfra -y --parallel N (files.put + server.shell under setsid, @localtarget)",
    }
