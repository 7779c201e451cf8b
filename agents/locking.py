"""Locks on an agent's row, fair to the kill switch.

The gate and approvals share-lock the agent's row; pausing and every policy change take it
`FOR UPDATE`. PostgreSQL lets a new share locker onto a row that is already share-locked even
while an updater waits, so a steady stream of gate calls could keep a pause waiting for ever
(a test with counted writes did exactly that). An advisory lock per agent sits in front of
the row lock: PostgreSQL's lock manager grants it in order, readers take it shared and writers
exclusive, so once a pause asks, new gate calls queue behind it and the pause gets the row as
soon as the calls in flight finish.
"""

from django.db import connection

from agents.models import Agent

AGENT_LOCK_CLASS = 4202  # first key of the per-agent advisory lock (4201: blast radius)

# A condition on agents_agent that takes the shared advisory lock of the row's agent.
SHARED_ADVISORY_CONDITION = f"pg_advisory_xact_lock_shared({AGENT_LOCK_CLASS}, id::integer) " \
                            "IS NOT NULL"


def lock_agents_for_change(*agent_ids: int) -> None:
    """Queue for the right to change these agents (in id order, so two changes cannot
    deadlock). Call inside the transaction, before touching the rows."""
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers anyway
    with connection.cursor() as cursor:
        for agent_id in sorted(set(agent_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [AGENT_LOCK_CLASS, agent_id])


def agent_for_update(agent_id: int) -> Agent:
    """The agent's row, locked for a change until commit."""
    lock_agents_for_change(agent_id)
    return Agent.objects.select_for_update().get(pk=agent_id)
