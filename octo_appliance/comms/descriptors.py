"""The process's open-file limit: raised toward the hard limit at start, and checked against
what the connections it serves need.

Every TLS connection holds a descriptor, so the usual soft limit of 1,024 stops a polling
listener long before 5,000 agents (docs/performance.md, "5,000 polling agents"). ``serve``
and ``octo-agent run`` raise their soft limit to the hard one at start; the appliance then
compares the limit with its polling targets whenever it reloads them and says in its log,
once per shortfall, when even the raised limit cannot hold them all.
"""

from __future__ import annotations

import logging

try:
    import resource
except ImportError:  # pragma: no cover - Windows: no descriptor limit to read or raise
    resource = None  # type: ignore[assignment]

log = logging.getLogger("octo_appliance.comms.descriptors")

#: an unlimited hard limit still stops at the kernel's nr_open (1,048,576 by default)
NR_OPEN = 1 << 20
#: descriptors kept for everything but the agents' connections: the database, log files,
#: API clients, listening agents dialled, runners' pipes, pending handshakes
SPARE = 1024


def descriptor_limit() -> int | None:
    """This process's soft limit on open descriptors (None: unlimited or unknown)."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft descriptor limit to its hard limit (the usual soft 1,024
    is far below what a listener serving a fleet needs); returns (old soft, new soft)."""
    if resource is None:
        return 0, 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NR_OPEN if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft, soft
    return soft, target


class DescriptorBudget:
    """Says in the log when the open-file limit is below what ``connections`` need (plus
    :data:`SPARE`); once per shortfall, again only when the need grows past it."""

    def __init__(self, what: str, spare: int = SPARE) -> None:
        self.what = what
        self.spare = spare
        self._warned_at = 0

    def check(self, connections: int) -> bool:
        """True when the limit holds ``connections`` and the spare."""
        limit = descriptor_limit()
        needed = connections + self.spare
        if limit is None or limit >= needed:
            self._warned_at = 0
            return True
        if needed > self._warned_at:
            self._warned_at = needed
            log.warning(
                "the open-file limit (%d) is below what %d %s need (%d with %d to spare): "
                "some cannot connect. Raise the hard limit (LimitNOFILE= in the systemd unit, "
                "or ulimit -Hn) to at least %d and restart",
                limit,
                connections,
                self.what,
                needed,
                self.spare,
                needed,
            )
        return False
