"""The gate: judge one proposed action, store it, audit it, answer. The hot path.

Concurrency (the kill switch): a decision is stored only while the agent's row still has the
policy version it was judged by, read under `SELECT … FOR SHARE`. Pausing (and every other
policy change) takes `FOR UPDATE` on that row and raises the version, so a pause waits for the
gate calls already storing, and every call that stores after it committed sees the new
version: once a pause has committed, nothing is allowed. Approvals take the same share lock
(reviews.services). A fair advisory lock in front of the row lock keeps a stream of gate
calls from starving a pause (agents.locking).

Two paths, one guarantee:
- unlocked (PostgreSQL, most calls): judge by the version read with the token, then one
  statement locks the agent row `FOR SHARE`, checks the version and inserts the request and
  its audit event; if the version moved, nothing is stored and the call takes the locked path;
- counted (PostgreSQL, an `execute` against `max_writes_per_hour`): judged twice, as if under
  and as if at the limit; one pipelined transaction takes the per-agent blast-radius lock in
  SHARED mode, then one statement counts the last hour's allowed writes (its snapshot is
  taken after the lock), picks the judgement that count calls for and stores it under the
  same guard, but only where the count settles it whatever the calls in flight do: at or
  over the limit (review), or so far under it that even every other connection the server
  allows (`max_connections` + `max_prepared_transactions`), each holding one uncounted
  write, could not reach it (allow). Between the two, nothing is stored and the call takes
  the locked path, whose EXCLUSIVE lock waits for every shared holder to commit, so its
  count is exact: two calls cannot both see "one write left". Shared holders do not wait for
  each other, so one busy agent's writes no longer queue behind one lock;
- locked: a transaction reads the version `FOR SHARE` first, then judges and stores (the
  fallback when the version moved, and every call on other databases).

Speed (tests/perf/gate.py): on PostgreSQL an unlocked call costs two round trips, the token
lookup and the guarded insert, like the bare baseline; a counted one the same two, as its
lock and its insert travel together in a psycopg pipeline. The inserts are raw SQL with the values
Django's own fields prepare, so the rows are exactly what `save()` and `audit.record()` write
(tests/perf/test_gate_rows.py compares them); other databases take the ORM path.
"""

import functools
import hashlib
import json
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import Group
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from psycopg.sql import Literal

from agents import snapshots
from agents.locking import SHARED_ADVISORY_CONDITION
from agents.models import AgentToken, DataSource, System
from agents.policy import Action, Counters, Decision, decide
from portal import audit
from portal.models import AuditEvent
from reviews.models import ActionRequest

BLAST_RADIUS_LOCK_CLASS = 4201  # first key of pg_advisory_xact_lock(class, agent id)
MONTH_COST_TTL_SECONDS = 15.0

# The part of a proposal an approval authorises: its SHA-256 binds a decision to it.
PROPOSAL_FIELDS = ("system", "operation", "kind", "target", "summary", "changes", "content",
                   "amount", "currency", "sources")

# A test may set this to a callable run between reading the policy and storing the decision,
# to prove the kill-switch lock matters (tests/reviews/test_kill_switch.py).
after_policy_read = None


class GateInputError(Exception):
    """The proposal names something that does not exist: answered with 400."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class GateResult:
    action: ActionRequest
    created: bool  # False: an earlier request with the same idempotency key


def proposal_digest(proposal: dict) -> str:
    """SHA-256 of the canonical JSON of what an approval would authorise."""
    canonical = {name: proposal.get(name) for name in PROPOSAL_FIELDS}
    if canonical.get("amount") is not None:
        canonical["amount"] = str(Decimal(str(canonical["amount"])).normalize())
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _system_id(slug: str, policy) -> int:
    """Systems the agent may use come with the snapshot; any other costs one query."""
    system_id = policy.system_ids.get(slug)
    if system_id is None:
        system_id = System.objects.filter(slug=slug).values_list("id", flat=True).first()
        if system_id is None:
            raise GateInputError("system", f"Unknown system '{slug}'. Systems are registered "
                                 "by an admin; ask for it to be added.")
    return system_id


def _check_sources(slugs: list[str], declared: dict) -> None:
    unknown = [s for s in slugs if s not in declared
               and not DataSource.objects.filter(slug=s).exists()]
    if unknown:
        raise GateInputError("sources", f"Unknown data source '{unknown[0]}'.")


_month_cost: dict[int, tuple[float, str, float]] = {}  # agent id -> (expires, month, usd)
_month_cost_lock = threading.Lock()


def _month_cost_usd(agent_id: int, now: datetime) -> float:
    """This month's spend, recounted at most every MONTH_COST_TTL_SECONDS per process."""
    month = now.strftime("%Y-%m")
    cached = _month_cost.get(agent_id)
    if cached and cached[0] > time.monotonic() and cached[1] == month:
        return cached[2]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = (ActionRequest.objects.filter(agent_id=agent_id, created_at__gte=start)
             .aggregate(total=Sum("cost_usd"))["total"]) or 0
    with _month_cost_lock:
        _month_cost[agent_id] = (time.monotonic() + MONTH_COST_TTL_SECONDS, month, float(total))
    return float(total)


def clear_caches() -> None:
    """Forget per-process caches (tests rebuild the database between cases)."""
    with _month_cost_lock:
        _month_cost.clear()
    snapshots.clear_cache()


# The ORM's `recent[:limit].count()` below, spelled out: literals, so the partial index
# `action_allowed_writes` (kind='execute' AND decision='allow') serves it.
WRITES_LAST_HOUR_SQL = (
    "SELECT COUNT(*) FROM (SELECT 1 FROM reviews_actionrequest WHERE agent_id = %s "
    "AND kind = 'execute' AND decision = 'allow' AND created_at >= %s LIMIT %s) AS recent")


# The locked path's blast-radius lock: exclusive, so it waits for every shared holder (the
# counted path's writes in flight) to commit before it counts.
EXCLUSIVE_BLAST_RADIUS_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, %s)"


def _writes_last_hour(agent_id: int, now: datetime, limit: int) -> int:
    since = now - timedelta(hours=1)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(EXCLUSIVE_BLAST_RADIUS_LOCK_SQL, [BLAST_RADIUS_LOCK_CLASS, agent_id])
            cursor.execute(WRITES_LAST_HOUR_SQL, [agent_id, since, limit])
            return cursor.fetchone()[0]
    recent = ActionRequest.objects.filter(
        agent_id=agent_id, kind="execute", decision="allow", created_at__gte=since)
    return recent[:limit].count()  # stop counting at the limit: the index scan stays short


# The agent's row, share-locked behind the fair advisory lock (agents.locking).
LOCKED_VERSION_SQL = ("SELECT policy_version FROM agents_agent WHERE id = %s "
                      f"AND {SHARED_ADVISORY_CONDITION} FOR SHARE")


def lock_agent_for_share(agent_id: int) -> int:
    """Read the agent's policy version under a share lock (see the module docstring)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(LOCKED_VERSION_SQL, [agent_id])
        else:
            cursor.execute("SELECT policy_version FROM agents_agent WHERE id = %s", [agent_id])
        return cursor.fetchone()[0]


def propose(*, token: AgentToken, proposal: dict) -> GateResult:
    """Judge, store and audit one proposal from the agent holding `token`."""
    agent_id = token.agent_id
    key = proposal.get("idempotency_key")
    if key:
        earlier = ActionRequest.objects.filter(agent_id=agent_id, idempotency_key=key).first()
        if earlier is not None:
            return GateResult(earlier, created=False)
    try:
        if _raw_sql():
            # One statement is its own transaction; inside a caller's, a savepoint keeps a
            # duplicate key from aborting it.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                store = _store_counted if _counted(token, proposal) else _store_unlocked
                action = store(token, agent_id, proposal)
            if action is not None:
                return GateResult(action, True)
        with transaction.atomic():
            return GateResult(_judge_and_store(token, agent_id, proposal), True)
    except IntegrityError:
        if not key:
            raise
        # The same key raced us to the insert: answer with the request that won.
        return GateResult(ActionRequest.objects.get(agent_id=agent_id, idempotency_key=key),
                          created=False)


def _counted(token: AgentToken, proposal: dict) -> bool:
    """Whether this proposal counts against the agent's hourly write limit."""
    return proposal["kind"] == "execute" and bool(
        snapshots.policy_snapshot(token.agent_id, token.agent.policy_version).max_writes_per_hour)


def _store_unlocked(token: AgentToken, agent_id: int, proposal: dict) -> ActionRequest | None:
    """The unlocked path: None, and nothing stored, if the policy changed since the token
    lookup."""
    policy = snapshots.policy_snapshot(agent_id, token.agent.policy_version)
    action, route_to_group, data = _judge(token, policy, proposal)
    return action if _insert_with_event(action, token, route_to_group, data) else None


def _store_counted(token: AgentToken, agent_id: int, proposal: dict) -> ActionRequest | None:
    """The counted path: None if the policy changed since the token lookup (nothing stored)."""
    policy = snapshots.policy_snapshot(agent_id, token.agent.policy_version)
    limit = policy.max_writes_per_hour
    under = _judge(token, policy, proposal, writes_last_hour=0)
    over = _judge(token, policy, proposal, writes_last_hour=limit,
                  public_id=under[0].public_id, now=under[0].created_at)
    return _insert_counted(token, under, over, limit)


def _judge_and_store(token: AgentToken, agent_id: int, proposal: dict) -> ActionRequest:
    """The locked path, inside the caller's transaction."""
    policy = snapshots.policy_snapshot(agent_id, lock_agent_for_share(agent_id))
    action, route_to_group, data = _judge(token, policy, proposal)
    if _raw_sql():
        stored = _insert_with_event(action, token, route_to_group, data)
        assert stored, "the share lock keeps the policy version"
    else:
        if route_to_group:
            action.route_to_group = Group.objects.filter(name=route_to_group).first()
        action.save(force_insert=True)
        audit.record(actor=token.agent, verb="action.proposed", obj=action, agent=token.agent,
                     data=data)
    return action


Judgement = tuple[ActionRequest, str | None, dict]


def _judge(token: AgentToken, policy, proposal: dict, writes_last_hour: int | None = None,
           public_id=None, now: datetime | None = None) -> Judgement:
    """The request as it will be stored, the group its review goes to, and its audit data.

    `writes_last_hour` None counts them (under the blast-radius lock); the counted path
    passes a figure, and judges the same request (`public_id`, `now`) twice."""
    agent_id = policy.agent_id
    system_id = _system_id(proposal["system"], policy)
    sources = list(proposal.get("sources") or [])
    _check_sources(sources, policy.sources)
    if after_policy_read is not None and public_id is None:
        after_policy_read()
    now = now or timezone.now()
    if writes_last_hour is None:
        writes_last_hour = (_writes_last_hour(agent_id, now, policy.max_writes_per_hour)
                            if proposal["kind"] == "execute" and policy.max_writes_per_hour
                            else 0)
    counters = Counters(
        writes_last_hour=writes_last_hour,
        month_cost_usd=(_month_cost_usd(agent_id, now)
                        if policy.monthly_cost_budget is not None else 0.0),
    )
    action = ActionRequest(agent_id=agent_id, token=token, created_at=now,
                           system_id=system_id, policy_version=policy.version)
    if public_id is not None:
        action.public_id = public_id
    for name in ("operation", "kind", "target", "summary", "content", "currency", "prompt",
                 "tokens", "idempotency_key"):
        setattr(action, name, proposal.get(name) or ("" if name not in (
            "tokens", "idempotency_key") else None))
    action.changes = proposal.get("changes") or {}
    action.sources = sources
    action.amount = proposal.get("amount")
    action.cost_usd = proposal.get("cost_usd")
    action.confidence = proposal.get("confidence")
    decision = decide(policy, Action(
        request_id=str(action.public_id), system=proposal["system"],
        operation=action.operation, kind=action.kind, target=action.target,
        summary=action.summary, changes=action.changes, content=action.content,
        amount=float(action.amount) if action.amount is not None else None,
        currency=action.currency, confidence=action.confidence, sources=tuple(sources),
    ), counters, now)
    route_to_group = _apply_decision(action, decision, proposal, now, policy.review_sla_hours)
    data = {"request": str(action.public_id), "prompt": action.prompt,
            "proposal": {name: proposal.get(name) for name in PROPOSAL_FIELDS},
            "decision": action.decision, "status": action.status,
            "sampled": action.sampled, "reasons": action.reasons,
            "policy_version": policy.version,
            "fired_guardrail_ids": action.fired_guardrail_ids}
    return action, route_to_group, data


def _apply_decision(action: ActionRequest, decision: Decision, proposal: dict,
                    now: datetime, sla_hours: int) -> str | None:
    """Copy the decision onto the request; the name of the group a review is routed to."""
    action.decision = decision.outcome
    action.status = ActionRequest.STATUS_FOR_DECISION[decision.outcome]
    action.reasons = [reason.as_dict() for reason in decision.reasons]
    action.sampled = decision.sampled
    action.fired_guardrail_ids = list(decision.fired_guardrail_ids)
    action.proposal_sha256 = proposal_digest(proposal)
    if decision.outcome == ActionRequest.Decision.REVIEW:
        action.due_at = now + timedelta(hours=sla_hours)  # the agent's review SLA
        return decision.route_to_group
    if decision.sampled:
        action.due_at = now + timedelta(hours=sla_hours)
    return None


def _raw_sql() -> bool:
    """Whether this database takes the raw-SQL inserts (a test compares both paths)."""
    return connection.vendor == "postgresql"


_ACTION_FIELDS = [f for f in ActionRequest._meta.concrete_fields if not f.primary_key]
_EVENT_FIELDS = [f for f in AuditEvent._meta.concrete_fields
                 if not f.primary_key and f.attname not in ("object_id", "data")]


def _preparation(field) -> str:
    """How a value reaches the insert as `save()` would send it: `raw` where Django passes
    it through unchanged on PostgreSQL (text, numbers, booleans, uuids, aware datetimes,
    foreign-key ids), `json` (json.dumps, cast to jsonb), or `field` (the field prepares it)."""
    kind = field.get_internal_type()
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return "field"  # pre_save() sets it
    if kind == "JSONField" and field.encoder is None:
        return "json"
    if kind in ("CharField", "TextField", "BooleanField", "IntegerField", "BigIntegerField",
                "PositiveIntegerField", "PositiveSmallIntegerField", "FloatField",
                "UUIDField", "DateTimeField", "ForeignKey"):
        return "raw"
    return "field"


# What a proposal never sets (its review, sample check, callback and outcome come later), and
# what every `action.proposed` event shares: the same on every insert, so these go into the
# statements as literals, written once from the values `save()` would send. That keeps the
# statements under psycopg's 50 parameters, below which it parses a statement once per
# process rather than on every call (a tenth of the gate's CPU).
_LATER_FIELDS = frozenset({
    "claimed_by_id", "claimed_at", "reviewed_by_id", "reviewed_at", "review_note",
    "edited_changes", "edited_content", "escalated_at", "sample_verdict",
    "sample_checked_by_id", "sample_checked_at", "callback_status", "callback_attempts",
    "callback_error", "callback_at", "outcome_detail", "outcome_at"})
_SHARED_EVENT_FIELDS = frozenset({"seq", "actor_type", "actor_user_id", "verb", "object_type",
                                  "prev_hash", "hash"})


def _plan(fields, constant: frozenset) -> list:
    return [(f.attname, "const" if f.attname in constant else _preparation(f), f)
            for f in fields]


_ACTION_PLAN = _plan(_ACTION_FIELDS, _LATER_FIELDS)
_ROUTE_GROUP_INDEX = [a for a, how, _f in _ACTION_PLAN if how != "const"].index(
    "route_to_group_id")
_EVENT_PLAN = _plan(_EVENT_FIELDS, _SHARED_EVENT_FIELDS)
_PLACEHOLDERS = {"raw": "%s", "json": "%s::jsonb", "field": "%s"}


def _proposed_event(agent, action: ActionRequest | None = None) -> AuditEvent:
    """The `action.proposed` event of `action` (None: the values every such event shares)."""
    return AuditEvent(actor_type=AuditEvent.ActorType.AGENT, actor_user=None,
                      actor_label=f"agent:{agent.slug}" if agent else "",
                      verb="action.proposed", object_type=ActionRequest._meta.label_lower,
                      object_repr=str(action)[:200] if action else "", agent=agent)


def _literal(obj, attname: str, field) -> str:
    """The SQL literal of the value `save()` would send for `attname` of `obj`."""
    how = _preparation(field)
    value = _prepared(obj, [(attname, how, field)])[0]
    literal = Literal(value).as_string(connection.connection)
    return f"{literal}::jsonb" if how == "json" and value is not None else literal


def _values_sql(plan, template, placeholder) -> str:
    """The VALUES list of an insert: literals for the constant fields (from `template`),
    `placeholder(attname, how)` for the others."""
    return ", ".join(_literal(template, attname, field) if how == "const"
                     else placeholder(attname, how) for attname, how, field in plan)


_ROUTE_GROUP_SQL = "(SELECT id FROM auth_group WHERE name = %s ORDER BY id LIMIT 1)"
# The agent row, share-locked, if it still has the version the decision was judged by. A
# test swaps it for one without the lock or the check, to prove the kill-switch test can fail.
AGENT_GUARD_SQL = ("SELECT id FROM agents_agent WHERE id = %s AND policy_version = %s "
                   f"AND {SHARED_ADVISORY_CONDITION} FOR SHARE")


@functools.cache
def _insert_with_event_sql(guard: str) -> str:
    """One statement for both rows, stored only if `guard` yields the agent's row; the event
    names the request by the id the first insert made."""
    return (
        "WITH guard AS ({guard}), "
        "action AS (INSERT INTO {action_table} ({action_columns}) SELECT {action_values} "
        "FROM guard RETURNING id, route_to_group_id), "
        "event AS (INSERT INTO {event_table} ({event_columns}, object_id, data) "
        "SELECT {event_values}, action.id::text, %s::jsonb FROM action RETURNING id) "
        "SELECT action.id, action.route_to_group_id FROM action, event").format(
        guard=guard,
        action_table=ActionRequest._meta.db_table,
        action_columns=", ".join(f'"{f.column}"' for f in _ACTION_FIELDS),
        action_values=_values_sql(_ACTION_PLAN, ActionRequest(), _action_placeholder),
        event_table=AuditEvent._meta.db_table,
        event_columns=", ".join(f'"{f.column}"' for f in _EVENT_FIELDS),
        event_values=_values_sql(_EVENT_PLAN, _proposed_event(None),
                                 lambda _attname, how: _PLACEHOLDERS[how]),
    )


def _action_placeholder(attname: str, how: str) -> str:
    return _ROUTE_GROUP_SQL if attname == "route_to_group_id" else _PLACEHOLDERS[how]


def _prepared(obj, plan) -> list:
    """The values `save()` would send for the plan's fields, constant ones left out."""
    values = []
    for attname, how, field in plan:
        if how == "const":
            continue
        value = getattr(obj, attname)
        if how == "json":
            value = None if value is None else json.dumps(value)
        elif how == "field":
            value = field.get_db_prep_save(field.pre_save(obj, True), connection)
        values.append(value)
    return values


def _insert_with_event(action: ActionRequest, token: AgentToken, route_to_group: str | None,
                       data: dict) -> bool:
    """Insert the request and its `action.proposed` event as `save()` and `audit.record()`
    would (same field preparation, same JSON), in one statement, if the agent still has the
    policy version of `action`. False, and nothing stored, if it has not."""
    action_params, event_params = _insert_params(action, token, route_to_group, data)
    params = [action.agent_id, action.policy_version, *action_params, *event_params]
    with connection.cursor() as cursor:
        cursor.execute(_insert_with_event_sql(AGENT_GUARD_SQL), params)
        row = cursor.fetchone()
    if row is None:
        return False
    action.pk, action.route_to_group_id = row
    action._state.adding, action._state.db = False, connection.alias
    return True


# The counted path's first statement: the blast-radius lock in shared mode, taken behind the
# fair agent lock (agents.locking), in the same order as the locked path takes them.
BLAST_RADIUS_LOCK_SQL = (f"SELECT pg_advisory_xact_lock_shared({BLAST_RADIUS_LOCK_CLASS}, "
                         f"id::integer) FROM agents_agent WHERE id = %s "
                         f"AND {SHARED_ADVISORY_CONDITION}")
# How many transactions, this one included, can hold the shared lock at once: one per
# connection the server allows, and prepared transactions. Read by the statement itself, so
# a restart with other settings is seen at once.
IN_FLIGHT_BOUND_SQL = ("(current_setting('max_connections')::int "
                       "+ current_setting('max_prepared_transactions')::int)")


def _choice(placeholder: str, differs: bool) -> str:
    return (f"CASE WHEN choice.over THEN {placeholder} ELSE {placeholder} END" if differs
            else placeholder)


@functools.cache
def _insert_counted_sql(guard: str, in_flight_bound: str, action_differs: tuple[bool, ...],
                        event_differs: tuple[bool, ...]) -> str:
    """Like `_insert_with_event_sql`, with the last hour's allowed writes counted in the same
    statement: each value that depends on the count is chosen by it. Stores nothing where
    writes in flight could still change the answer (see the module docstring)."""
    action_choices = iter(action_differs)
    event_choices = iter(event_differs)
    return (
        "WITH guard AS ({guard}), "
        "recent AS ({count}), "
        "choice AS (SELECT recent.count >= %s AS over FROM guard, recent "
        "WHERE recent.count >= %s OR recent.count + {in_flight_bound} <= %s), "
        "action AS (INSERT INTO {action_table} ({action_columns}) SELECT {action_values} "
        "FROM choice RETURNING id, route_to_group_id), "
        "event AS (INSERT INTO {event_table} ({event_columns}, object_id, data) "
        "SELECT {event_values}, action.id::text, {data} FROM action, choice RETURNING id) "
        "SELECT action.id, action.route_to_group_id, choice.over "
        "FROM action, event, choice").format(
        guard=guard,
        count=WRITES_LAST_HOUR_SQL,
        in_flight_bound=in_flight_bound,
        action_table=ActionRequest._meta.db_table,
        action_columns=", ".join(f'"{f.column}"' for f in _ACTION_FIELDS),
        action_values=_values_sql(_ACTION_PLAN, ActionRequest(), lambda attname, how: _choice(
            _action_placeholder(attname, how), next(action_choices))),
        event_table=AuditEvent._meta.db_table,
        event_columns=", ".join(f'"{f.column}"' for f in _EVENT_FIELDS),
        event_values=_values_sql(_EVENT_PLAN, _proposed_event(None), lambda _a, how: _choice(
            _PLACEHOLDERS[how], next(event_choices))),
        data=_choice("%s::jsonb", next(event_choices)),
    )


def _choice_params(over: list, under: list) -> tuple[tuple[bool, ...], list]:
    """Which values differ, and the parameters in placeholder order (`over` first)."""
    differs = tuple(a != b for a, b in zip(over, under, strict=True))
    params = []
    for d, a, b in zip(differs, over, under, strict=True):
        params.extend((a, b) if d else (b,))
    return differs, params


def _insert_params(action: ActionRequest, token: AgentToken, route_to_group: str | None,
                   data: dict) -> tuple[list, list]:
    """The request's and its audit event's values (the event's JSON data last)."""
    event = _proposed_event(token.agent, action)
    action_params = _prepared(action, _ACTION_PLAN)
    action_params[_ROUTE_GROUP_INDEX] = route_to_group  # its placeholder looks it up by name
    # audit.record() stores json.loads(json.dumps(data, DjangoJSONEncoder, sort_keys=True)):
    # the same JSON document, parsed by PostgreSQL instead.
    return action_params, [*_prepared(event, _EVENT_PLAN),
                           json.dumps(data, cls=DjangoJSONEncoder, sort_keys=True)]


def _insert_counted(token: AgentToken, under: Judgement, over: Judgement,
                    limit: int) -> ActionRequest | None:
    """Store the judgement the count calls for, in one pipelined round trip: the shared lock,
    then the counting insert (a statement of its own, so its snapshot follows the lock).
    None, and nothing stored, if the agent's policy version moved or the count is too near
    the limit to settle without the exclusive lock."""
    under_action, under_event = _insert_params(token=token, action=under[0],
                                               route_to_group=under[1], data=under[2])
    over_action, over_event = _insert_params(token=token, action=over[0],
                                             route_to_group=over[1], data=over[2])
    action_differs, action_params = _choice_params(over_action, under_action)
    event_differs, event_params = _choice_params(over_event, under_event)
    action = under[0]
    since = action.created_at - timedelta(hours=1)
    params = [action.agent_id, action.policy_version, action.agent_id, since, limit, limit,
              limit, limit, *action_params, *event_params]
    sql = _insert_counted_sql(AGENT_GUARD_SQL, IN_FLIGHT_BOUND_SQL, action_differs,
                              event_differs)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with connection.connection.pipeline():
            cursor.execute(BLAST_RADIUS_LOCK_SQL, [action.agent_id])
            cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    action = over[0] if row[2] else under[0]
    action.pk, action.route_to_group_id = row[0], row[1]
    action._state.adding, action._state.db = False, connection.alias
    return action
