"""Deployment conventions: the steps ``deploy-package`` applies to a package, one module each.

In the order they run (docs/conventions.md): ``journal`` (skip what is already installed),
``extract`` (zip, tar, tar.gz into a fresh release folder), ``scripts`` (PreDeploy, Deploy,
PostDeploy and DeployFailed), ``substitute`` (``#{...}`` in files), ``structured`` (JSON,
XML, properties and INI keys), ``install_dir`` (copy to a custom directory), and
``retention`` (keep the last N releases). ``target`` reads the agent's paths from the
request context; ``globs`` and ``files`` are small shared helpers.

Every module is standard library only and imported on demand by the command that needs it.
"""

from __future__ import annotations

from ..errors import RunnerError


class Canceled(RunnerError):
    """The task was canceled while a convention ran (exit code 143, like a canceled script)."""

    exit_code = 143
