"""The node registry's table: one row per appliance node name (see :mod:`octo_appliance.nodes`).

A row is written by the node of that name when it starts (a new ``generation`` each time) and
refreshed by its heartbeat; any other node may mark it ``dead`` when the heartbeat is older than
``node_dead_after``. Times are the database's clock, so nodes need not agree on theirs.
"""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, JSONField

ALIVE = "alive"
STOPPED = "stopped"
DEAD = "dead"


class Node(BaseModel):
    id_prefix = "node"

    name = peewee.CharField(max_length=100, unique=True)
    #: the node's HTTPS address (what a load balancer or another node dials) and its polling
    #: listener (what polling agents dial), as ``host:port``
    address = peewee.CharField(max_length=300, default="")
    polling_address = peewee.CharField(max_length=300, default="")
    version = peewee.CharField(max_length=40, default="")
    started_at = peewee.DateTimeField()
    heartbeat_at = peewee.DateTimeField()
    #: bumped at every start: a claim or heartbeat of an older generation is refused
    generation = peewee.IntegerField(default=1)
    state = peewee.CharField(max_length=20, default=ALIVE)
    #: why the node is stopped or dead (empty while alive)
    reason = peewee.TextField(default="")
    task_cap = peewee.IntegerField(default=1)
    #: tasks it ran at its last heartbeat
    running = peewee.IntegerField(default=0)
    draining = peewee.BooleanField(default=False)
    #: id of the master key it seals with (every live node must have the same)
    key_id = peewee.CharField(max_length=64, default="")
    #: the plugins it loaded: ["name version", ...]
    plugins = JSONField(default=list)
