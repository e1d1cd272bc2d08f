"""One forked runner's fixed cost: CPU per ``run-script`` of a one-line console script.

A real fork server (``octo-runner --fork-server`` from the zipapp the appliance builds, started
as the agent starts it: ``python -I -S runner.pyz --fork-server``, control socket as stdin)
forks one runner per request, one request at a time; the figure is the fork server's children
CPU (the forked runners and every script process they reaped, from ``psutil``) per run. This
is the "fork servers, runners, scripts" share of ``bench/dispatch.py``'s CPU per target,
without the appliance, the agents or the TLS connections beside it.

    .venv/bin/python bench/forked_runner.py [--runs 200] [--body 'echo ok'] [--variables 26]

``--variables`` puts that many request variables in the table the script helpers load (the
appliance sends ~26 with a console script). CPU seconds, not wall time: the machine is
shared; the load average is printed beside the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from octo_appliance.builds.runner import prepare_runner

#: values as a console script's variables have them: names, paths, ids; one with a line break
_VALUES = ("web-01", "/var/lib/octo-agent/work/tasks-81", "Production", "line 1\nline 2", "17")


def _request(work_dir: Path, body: str, variables: int) -> bytes:
    values = [
        {"name": f"Octo.Bench.Variable{i}", "value": _VALUES[i % len(_VALUES)], "sensitive": False}
        for i in range(variables)
    ]
    request = {
        "protocol": 1,
        "command": "run-script",
        "arguments": {"syntax": "bash", "body": body},
        "variables": values,
        "work_dir": str(work_dir),
        "context": {},
    }
    return json.dumps(request).encode()


def _one(control: socket.socket, ident: int, request: bytes) -> bytes:
    """Fork one runner, feed it ``request``, return its stdout once it has exited."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    socket.send_fds(control, [json.dumps({"id": ident}).encode()], [stdin_r, stdout_w, stderr_w])
    for fd in (stdin_r, stdout_w, stderr_w):
        os.close(fd)
    with os.fdopen(stdin_w, "wb") as pipe:
        pipe.write(request)
    with os.fdopen(stdout_r, "rb") as out, os.fdopen(stderr_r, "rb") as err:
        data = out.read()
        err.read()
    exited = False
    while not exited:  # the answer with the pid, then the exit
        message = json.loads(control.recv(4096))
        if "error" in message:
            sys.exit(f"fork failed: {message['error']}")
        exited = "exit" in message
        if exited and message["code"] != 0:
            sys.exit(f"the runner failed ({message['code']}): {data.decode()[-500:]}")
    return data


def _child_faults(pid: int) -> int:
    """Page faults of the reaped children of ``pid`` (``cminflt``, ``/proc/PID/stat``): a
    forked child's copy-on-write faults show here."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[8])  # field 11 of proc(5), counted after the ")" that ends field 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--body", default="echo ok")
    parser.add_argument("--variables", type=int, default=26)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="octo-forked-") as tmp_name:
        tmp = Path(tmp_name)
        runner = prepare_runner(tmp / "runner")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server = subprocess.Popen(
            [sys.executable, "-I", "-S", str(runner.path), "--fork-server"],
            stdin=theirs.fileno(),
            stdout=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
        theirs.close()
        try:
            if not json.loads(ours.recv(4096)).get("ready"):
                sys.exit("the fork server did not say ready")
            watched = psutil.Process(server.pid)
            request = _request(tmp / "work", args.body, args.variables)
            for i in range(5):  # warm-up: the first run creates the work dir
                _one(ours, i + 1, request)
            before = watched.cpu_times()
            faults_before = _child_faults(server.pid)
            load_before = os.getloadavg()
            started = time.perf_counter()
            for i in range(args.runs):
                _one(ours, 100 + i, request)
            wall = time.perf_counter() - started
            after = watched.cpu_times()
            faults = (_child_faults(server.pid) - faults_before) / args.runs
        finally:
            ours.close()
            server.wait(timeout=30)
    children = (after.children_user + after.children_system) - (
        before.children_user + before.children_system
    )
    server_own = (after.user + after.system) - (before.user + before.system)
    load = (
        ", ".join(f"{a:.1f}" for a in load_before)
        + " -> "
        + ", ".join(f"{a:.1f}" for a in os.getloadavg())
    )
    print(
        f"{args.runs} forked runners, script {args.body!r}, {args.variables} variables: "
        f"runners + scripts {children / args.runs * 1000:.2f} ms CPU each, fork server "
        f"{server_own / args.runs * 1000:.2f} ms each; {faults:.0f} page faults each; "
        f"wall {wall / args.runs * 1000:.1f} ms each (load {load})"
    )


if __name__ == "__main__":
    main()
