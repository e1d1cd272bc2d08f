"""Several appliance nodes on one PostgreSQL: the node registry (:mod:`.registry`) and this
node's membership, heartbeat, fencing and the reaper of dead nodes (:mod:`.service`).

docs/ha.md says how to run several nodes and what happens when one dies.
"""
