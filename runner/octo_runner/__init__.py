"""The Octo runner: does deployment work on a target, driven over stdin/stdout by the agent.

Standard library only (it runs as a zipapp under any ``python3 -I`` >= 3.9), and importable by
the appliance, which shares the substitution engine, the service-message parser and masking.
The wire protocol is described in ``docs/runner-protocol.md``.
"""

from __future__ import annotations

__version__ = "0.1.0"

#: Version of the stdin/stdout protocol; bumped on any incompatible change.
PROTOCOL_VERSION = 1
