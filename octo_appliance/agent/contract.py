"""The calls the appliance and an agent make to each other over one comms connection.

Both directions travel on the same connection whatever dialled it (listening or polling), so
an agent fetches the runner from the appliance over the connection it already trusts.
docs/agent.md has the same contract with examples.

Appliance -> agent (the agent handles them):

``agent.info`` ``{}`` -> ``{"agent_version", "protocol", "name", "target_id", "mode", "os",
"hostname", "runner_versions": [...], "work_dir", "cache_dir", "running", "plugin_bundles"}``

``runner.run`` ``{"task_id", "runner": {"version", "sha256"}, "command", "arguments",
"variables": [{"name","value","sensitive"}], "context": {...}, "exclusive": true,
"plugin"?: {"name", "sha256"}}``
    Runs the runner (fetching that version first if it is not cached) in a fresh work dir
    ``work/<task_id>-<n>/`` under the agent home. ``exclusive`` (default true) waits for the
    target mutex, one exclusive task at a time per agent identity, and emits the log event
    "waiting for another task on this target to finish" (``stream: "agent"``) when it has to
    wait; ``exclusive: false`` bypasses the mutex. Each runner event is re-emitted as a comms
    EVENT unchanged (the final ``result`` event included). Result: ``{"exit_code", "success",
    "canceled", "message", "status"? (health-check), "output_variables": [{"name", "value",
    "sensitive"}], "artifacts": [{"path", "name", "length"}], "details": {...}, "work_dir"}``.
    The agent adds absolute paths to ``context``: ``cache_dir`` (packages by SHA-256),
    ``applications_dir`` (where packages are extracted) and ``journal_file`` (the runner's
    deployment journal); they override the same keys sent by the appliance.
    ``plugin`` (optional) names the bundle a step plugin's command comes from: fetched
    with ``plugin.fetch`` when it is not cached, its SHA-256 checked, then handed to the
    runner as the request's ``plugin`` (``{"name", "sha256", "path"}``); an agent that
    reports ``plugin_bundles`` in ``agent.info`` understands it.
    Cancelling the call kills the runner's whole process tree. Errors (CallFailed codes):
    ``bad_request``, ``runner_unavailable`` (cannot fetch), ``runner_mismatch`` (the fetched
    build does not have the announced SHA-256: nothing ran, nothing was cached),
    ``runner_failed`` (the process could not start), ``work_dir_failed``.

``cache.has`` ``{"sha256"}`` -> ``{"present": bool, "length": int | null}``

``cache.put`` ``{"sha256", "length", "name", "package_id"?, "version"?}`` + uploaded file
-> ``{"stored": true, "path"}``
    The comms layer verifies the transfer; the agent then checks the file is the content
    named by ``sha256`` (``hash_mismatch``, ``length_mismatch``). Idempotent. ``package_id``
    and ``version`` (optional) are recorded in the cache index for ``cache.list``.

``cache.list`` ``{"package_id"}`` -> ``{"packages": [{"sha256", "version", "length", "name"}]}``
    The cached versions of one package whose file is still there (retention may delete
    files without touching the index). The appliance picks the base of a delta from them.

``cache.patch`` ``{"base_sha256", "sha256", "length", "name", "package_id"?, "version"?}`` +
uploaded delta -> ``{"stored": true, "path"}``
    Applies the delta (:mod:`octo_appliance.feed.delta`) to the cached ``base_sha256`` and
    stores the result like ``cache.put``, after checking its length and SHA-256; nothing is
    stored otherwise. Errors: ``base_missing`` (the base is not cached), ``delta_failed``
    (corrupt, or made from other content), ``length_mismatch``, ``hash_mismatch``. Any of
    them means: send the whole package with ``cache.put``.

``files.fetch`` ``{"task_id", "path"}`` -> ``{"path", "length"}`` + file download
    ``path`` is absolute (as artifact events report it) or relative to the task's latest work
    dir; it must resolve, symlinks included, inside one of that task's work dirs
    (``forbidden_path``, ``not_found``).

``agent.update`` ``{"manifest": {"component", "version", "platform", "size", "sha256",
"signature"}, "confirm_seconds"}`` -> ``{"staged": bool, "version"}``
    Self-update (docs/agent.md): only under ``run --supervise`` (``update_unsupported``) and
    when idle (``busy``). The agent checks the Ed25519 signature with the key stored at
    registration, fetches the build with ``agent.fetch``, checks length and SHA-256 against
    the manifest (``build_refused``: nothing replaced), stages it and exits for its
    supervisor to start it. It must then connect and be confirmed within ``confirm_seconds``.

``agent.update.confirm`` ``{"version"}`` -> ``{"confirmed": bool, "version"}``
    The appliance saw the new build connect: it becomes the agent's current build.

Agent -> appliance (the appliance handles them):

``runner.fetch`` ``{"version", "sha256"}`` -> file download of ``octo-runner-<version>.pyz``
    (the agent checks the SHA-256 it was given in ``runner.run`` before caching it; ``sha256``
    is informational for the appliance).

``plugin.fetch`` ``{"sha256", "name"}`` -> file download of the plugin command bundle with
    that SHA-256 (one the appliance built from a step type's target-side code); checked and
    cached by the agent exactly like the runner. Errors: ``unknown_bundle``.
``agent.fetch`` ``{"version"}`` -> file download of the agent build the appliance serves
    (``unknown_build`` when it serves another version).
"""

from __future__ import annotations

AGENT_INFO = "agent.info"
RUNNER_RUN = "runner.run"
CACHE_HAS = "cache.has"
CACHE_PUT = "cache.put"
CACHE_LIST = "cache.list"
CACHE_PATCH = "cache.patch"
FILES_FETCH = "files.fetch"
RUNNER_FETCH = "runner.fetch"
PLUGIN_FETCH = "plugin.fetch"
#: the version of plugin command bundles an agent handles (``agent.info``'s
#: ``plugin_bundles``; absent: an agent from before them, which ignores ``plugin``)
PLUGIN_BUNDLES = 1
AGENT_UPDATE = "agent.update"
AGENT_UPDATE_CONFIRM = "agent.update.confirm"
AGENT_FETCH = "agent.fetch"


#: the ``stream`` of log events the agent itself adds to a runner's event stream
AGENT_STREAM = "agent"
#: the log event a runner.run emits while it waits for the target mutex
WAITING_MESSAGE = "waiting for another task on this target to finish"


def package_fields(package_id: str | None, version: str | None) -> dict[str, str]:
    """The optional ``package_id``/``version`` of ``cache.put`` and ``cache.patch`` (what
    ``cache.list`` reports later), those given, each at most 255 characters."""
    return {
        key: value[:255]
        for key, value in (("package_id", package_id), ("version", version))
        if value
    }
