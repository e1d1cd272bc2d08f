"""The agent: a long-running process on a target that trusts one appliance by pinned key.

It imports ``comms`` and the runner, never ``db``, ``engine`` or ``api``.
"""
