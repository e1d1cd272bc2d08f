"""Calls relayed between nodes (docs/ha.md, "Calls across nodes"): the tables as models.

The relay itself (``transports/relay/``) reads and writes them with its own SQL over an
asynchronous PostgreSQL connection; these models exist so the schema check sees them. Rows are
transient and their ``body``/``outcome`` sealed by the relay, bound to the call's id.

They are not in ``SEALED_COLUMNS``: a master-key rotation deletes them instead
(:func:`drop_relay_rows`, docs/ha.md "Master-key rotation and the relay").
"""

from __future__ import annotations

import peewee

from octo_appliance.db.base import BaseModel, utcnow


class RelayNode(BaseModel):
    """A running node (its id is new at every start) and when it last said so."""

    label = peewee.CharField(max_length=200)
    seen_at = peewee.DateTimeField(default=utcnow)


class RelayAgent(BaseModel):
    """A polling agent's connection: which node holds it."""

    thumbprint = peewee.CharField(max_length=64, unique=True)
    node = peewee.ForeignKeyField(RelayNode, on_delete="CASCADE", index=True)
    connected_at = peewee.DateTimeField(default=utcnow)


class RelayCall(BaseModel):
    """One call node ``origin_node`` hands node ``target_node`` for an agent connected there."""

    origin_node = peewee.CharField(max_length=40)
    target_node = peewee.CharField(max_length=40)
    method = peewee.CharField(max_length=100)
    body = peewee.TextField()
    state = peewee.CharField(max_length=20)
    outcome = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("target_node", "state"), False),)


class RelayEvent(BaseModel):
    """One event a relayed call streamed, in order."""

    call = peewee.ForeignKeyField(RelayCall, on_delete="CASCADE", index=False)
    seq = peewee.IntegerField()
    body = peewee.TextField()

    class Meta:
        indexes = ((("call", "seq"), True),)


class RelayChunk(BaseModel):
    """A piece of a relayed call's upload (``up``) or downloaded answer (``down``)."""

    call = peewee.ForeignKeyField(RelayCall, on_delete="CASCADE", index=False)
    direction = peewee.CharField(max_length=4)
    seq = peewee.IntegerField()
    body = peewee.TextField()

    class Meta:
        indexes = ((("call", "direction", "seq"), True),)


#: children before parents
RELAY_MODELS: tuple[type[BaseModel], ...] = (
    RelayChunk,
    RelayEvent,
    RelayCall,
    RelayAgent,
    RelayNode,
)


def drop_relay_rows() -> int:
    """Delete every relay row; how many there were.

    For a master-key rotation, which runs only while no node runs (it holds the in-use lock
    exclusive on the database): every relay row then was left by a node killed in a call. No
    process waits for it (a node's relay id is new at every start, so no node can take or
    answer it) and the next start would purge it; re-sealed it would only outlive the key.
    """
    dropped = 0
    for model in RELAY_MODELS:
        dropped += int(model.delete().execute())
    return dropped
