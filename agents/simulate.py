"""The policy simulator: what a draft policy would have decided, without writing anything.

`replay()` streams an agent's stored action requests of the last 30 days through the pure
engine (`agents.policy.decide`) under a draft `PolicySnapshot` and counts the transitions
from the decision each request got ("before") to the one the draft gives ("after"), with up
to 20 examples per changed cell. `judge()` answers for one hand-written action.

What a replay takes from where (DESIGN.md, issue 8):
- the proposal (system, operation, kind, target, changes, amount, confidence, sources) is the
  stored request's; amounts as stored (4 decimal places);
- the policy (access, declared and approved sources, guardrails, thresholds, autonomy, sample
  rate, write limit, budget) is the draft's;
- facts of the time come from the stored stream, not from today: the agent's status (a
  request stored with a paused/retired/not-started reason stays blocked by it), a source's
  freshness (its stored `source_stale` reason counts while the draft still declares and
  approves that source), the writes allowed in the hour before (counted from the draft's own
  replayed decisions, as the live gate counts its own), and the month's spend (the stored
  `cost_usd` of every request of that calendar month before it, exactly: the live gate may
  lag up to 15 s behind);
- L2 sampling draws by the stored request's id, as the gate did.

Speed: one query for the rows (a server-side cursor, tuples, only the columns the engine
reads), no ORM objects per row, the draft prepared once; the examples' summaries are fetched
afterwards for at most 20 rows per cell.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from agents.policy import (
    ALLOW,
    BLOCK,
    REVIEW,
    Action,
    Counters,
    Decision,
    GuardrailRule,
    PolicySnapshot,
    SourceInfo,
    decide,
)

REPLAY_DAYS = 30
EXAMPLES_PER_CELL = 20
OUTCOMES = (ALLOW, REVIEW, BLOCK)
STATUS_CODES = frozenset({"paused", "retired", "not_started"})
STALE_CODE = "source_stale"
_TIME_CODES = STATUS_CODES | {STALE_CODE}
_TIME_TOKENS = tuple(f'"{code}"' for code in _TIME_CODES)  # in the reasons' JSON text
_STALE_ENDINGS = ("' was refreshed", "' has never been refreshed")
_CHUNK = 10000


@dataclass
class Example:
    id: int
    before: str
    after: str
    reasons: list[dict[str, str]]  # the draft's reasons
    # filled in after the replay (one query for all examples)
    public_id: str = ""
    created_at: datetime | None = None
    system: str = ""
    operation: str = ""
    kind: str = ""
    target: str = ""
    summary: str = ""
    stored_reasons: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Replay:
    since: datetime
    until: datetime
    total: int
    counts: dict[tuple[str, str], int]  # (before, after) -> requests
    examples: dict[tuple[str, str], list[Example]]  # changed cells only

    @property
    def changed(self) -> int:
        return sum(n for (before, after), n in self.counts.items() if before != after)

    def transitions(self) -> dict[str, int]:
        """Changed cells as {"allow→review": n}: what the API and tests compare."""
        return {f"{b}→{a}": n for (b, a), n in self.counts.items() if b != a and n}

    def rows(self) -> list[dict[str, Any]]:
        """The matrix for a template: one row per "before", its cells in OUTCOMES order."""
        return [{"before": before,
                 "total": sum(self.counts.get((before, after), 0) for after in OUTCOMES),
                 "cells": [{"after": after, "count": self.counts.get((before, after), 0),
                            "changed": before != after} for after in OUTCOMES]}
                for before in OUTCOMES]

    def changed_cells(self) -> list[dict[str, Any]]:
        return [{"before": b, "after": a, "count": self.counts[(b, a)],
                 "examples": self.examples.get((b, a), [])}
                for b in OUTCOMES for a in OUTCOMES if b != a and self.counts.get((b, a))]


# --- drafts ------------------------------------------------------------------------------------

def draft_with(policy: PolicySnapshot, **changes: Any) -> PolicySnapshot:
    """The policy with some fields replaced (thresholds, autonomy, access, sources…)."""
    return replace(policy, **changes)


def draft_with_access(policy: PolicySnapshot, *, system_slug: str, system_id: int,
                      max_kind: str) -> PolicySnapshot:
    return replace(policy, access={**policy.access, system_slug: max_kind},
                   system_ids={**policy.system_ids, system_slug: system_id})


def draft_with_guardrail(policy: PolicySnapshot, rule: GuardrailRule) -> PolicySnapshot:
    return replace(policy, guardrails=(*policy.guardrails, rule))


def source_info(source) -> SourceInfo:
    """A DataSource as the engine sees it (what agents.snapshots builds)."""
    return SourceInfo(slug=source.slug, name=source.name, approved=source.approved,
                      refreshed_at=source.refreshed_at, max_age=source.max_age)


# --- replay ------------------------------------------------------------------------------------

# Only what the engine reads, in the cheapest form: jsonb as text (parsed only when needed),
# times as epoch seconds, money as floats and micro-dollars (exact sums, as the gate's).
_ROWS_SQL = (
    "SELECT id, public_id::text, system_id, operation, kind, target, changes::text, "
    "amount::float8, confidence, sources::text, (cost_usd * 1000000)::bigint, decision, "
    "reasons::text, extract(epoch FROM created_at)::float8 FROM reviews_actionrequest "
    "WHERE agent_id = %s AND created_at >= %s AND created_at <= %s ORDER BY created_at, id")


def _rows(agent_id: int, since: datetime, until: datetime):
    """(id, public_id, system_id, operation, kind, target, changes JSON, amount, confidence,
    sources JSON, cost in micro-dollars, decision, reasons JSON, epoch seconds), in time
    order, streamed."""
    from reviews.models import ActionRequest

    if connection.vendor == "postgresql":
        # A named (server-side) cursor, inside replay()'s transaction.
        with connection.cursor() as cursor:
            raw = cursor.cursor.connection.cursor(name=f"replay_{uuid.uuid4().hex}")
            try:
                raw.itersize = _CHUNK
                raw.execute(_ROWS_SQL, [agent_id, since, until])
                yield from raw
            finally:
                raw.close()
        return
    for (row_id, public_id, system_id, operation, kind, target, changes, amount, confidence,
         sources, cost, decision, reasons, created_at) in (
            ActionRequest.objects.filter(agent_id=agent_id, created_at__gte=since,
                                         created_at__lte=until)
            .order_by("created_at", "id")
            .values_list("id", "public_id", "system_id", "operation", "kind", "target",
                         "changes", "amount", "confidence", "sources", "cost_usd",
                         "decision", "reasons", "created_at")
            .iterator(chunk_size=_CHUNK)):
        yield (row_id, str(public_id), system_id, operation, kind, target, json.dumps(changes),
               float(amount) if amount is not None else None, confidence, json.dumps(sources),
               int(cost * 1_000_000) if cost is not None else None, decision,
               json.dumps(reasons), created_at.timestamp())


def _stale_source_name(message: str) -> str | None:
    for ending in _STALE_ENDINGS:
        end = message.rfind(ending)
        if message.startswith("Source '") and end > 0:
            return message[len("Source '"):end]
    return None


def _month_start(moment: datetime) -> datetime:
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def replay(*, agent_id: int, draft: PolicySnapshot, now: datetime | None = None,
           days: int = REPLAY_DAYS) -> Replay:
    """Replay the agent's stored requests of the last `days` days under `draft`. Reads only."""
    from django.db import transaction

    from agents.models import System
    from reviews.models import ActionRequest

    until = now or timezone.now()
    since = until - timedelta(days=days)
    systems = dict(System.objects.values_list("id", "slug"))
    # Freshness comes from the stored reasons (see the module docstring): the engine must
    # not judge it again by today's clock, and the status is the one at the time.
    engine_policy = replace(
        draft, status="live",
        sources={slug: replace(source, max_age=None) for slug, source in draft.sources.items()})
    approved_names = {slug: source.name for slug, source in draft.sources.items()
                      if source.approved and source.max_age is not None}
    limit = draft.max_writes_per_hour
    budget = draft.monthly_cost_budget
    # changes are parsed only if a guardrail looks into them
    needs_changes = any(rule.field.startswith("changes.") for rule in draft.guardrails)
    # Allowed writes in the hour before the window and spend of its month before it: stored.
    recent_writes: deque[float] = deque(
        moment.timestamp() for moment in
        ActionRequest.objects.filter(agent_id=agent_id, kind="execute", decision=ALLOW,
                                     created_at__gte=since - timedelta(hours=1),
                                     created_at__lt=since)
        .order_by("created_at").values_list("created_at", flat=True)) if limit else deque()
    month = _month_start(since)
    next_month = _month_start(month + timedelta(days=32)).timestamp()
    spent = 0  # micro-dollars: exact, as the gate's Decimal sum
    if budget is not None:
        before_window = (ActionRequest.objects.filter(
            agent_id=agent_id, created_at__gte=month, created_at__lt=since)
            .aggregate(total=Sum("cost_usd"))["total"]) or Decimal(0)
        spent = int(before_window * 1_000_000)
    no_counters = Counters()
    empty: dict = {}
    loads = json.loads

    counts: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], list[Example]] = {}
    total = 0
    with transaction.atomic():
        for (row_id, public_id, system_id, operation, kind, target, changes, amount,
             confidence, sources, cost, before, reasons, created) in _rows(
                agent_id, since, until):
            total += 1
            counted = kind == "execute" and limit
            if counted or budget is not None:
                if budget is not None and created >= next_month:  # the gate counts by month
                    month = _month_start(datetime.fromtimestamp(created, UTC))
                    next_month = _month_start(month + timedelta(days=32)).timestamp()
                    spent = 0
                if counted:
                    edge = created - 3600
                    while recent_writes and recent_writes[0] < edge:
                        recent_writes.popleft()
                counters = Counters(
                    writes_last_hour=min(len(recent_writes), limit) if counted else 0,
                    month_cost_usd=spent / 1_000_000 if budget is not None else 0.0)
            else:
                counters = no_counters
            cited = () if sources == "[]" else tuple(loads(sources))
            decision = decide(engine_policy, Action(
                request_id=public_id, system=systems.get(system_id, ""),
                operation=operation, kind=kind, target=target,
                changes=loads(changes) if needs_changes and changes != "{}" else empty,
                amount=amount, confidence=confidence, sources=cited), counters, until)
            after = decision.outcome
            extra: list[dict[str, str]] = []
            if reasons != "[]" and any(token in reasons for token in _TIME_TOKENS):
                after, extra = _facts_of_the_time(after, loads(reasons), cited, approved_names)
            if cost is not None:
                spent += cost
            if counted and after == ALLOW:
                recent_writes.append(created)
            key = (before, after)
            counts[key] = counts.get(key, 0) + 1
            if before != after:
                cell = examples.setdefault(key, [])
                if len(cell) < EXAMPLES_PER_CELL:
                    cell.append(Example(id=row_id, before=before, after=after, reasons=[
                        *extra, *(reason.as_dict() for reason in decision.reasons)]))
    _fill_examples(examples, systems)
    return Replay(since=since, until=until, total=total, counts=counts, examples=examples)


def _facts_of_the_time(after: str, reasons: list[dict], sources: tuple[str, ...],
                       approved_names: dict[str, str]) -> tuple[str, list[dict[str, str]]]:
    """Apply the stored status and staleness reasons to the draft's outcome."""
    extra = [r for r in reasons if r.get("code") in STATUS_CODES]
    if extra:
        return BLOCK, extra
    cited = {approved_names[slug] for slug in sources if slug in approved_names}
    stale = [r for r in reasons if r.get("code") == STALE_CODE
             and _stale_source_name(r.get("message", "")) in cited]
    if stale and after == ALLOW:
        after = REVIEW
    return after, stale


def _fill_examples(examples: dict[tuple[str, str], list[Example]],
                   systems: dict[int, str]) -> None:
    from reviews.models import ActionRequest

    by_id = {example.id: example for cell in examples.values() for example in cell}
    if not by_id:
        return
    for (row_id, public_id, created_at, system_id, operation, kind, target, summary,
         stored) in ActionRequest.objects.filter(id__in=by_id).values_list(
            "id", "public_id", "created_at", "system_id", "operation", "kind", "target",
            "summary", "reasons"):
        example = by_id[row_id]
        example.public_id, example.created_at = str(public_id), created_at
        example.system, example.operation, example.kind = (
            systems.get(system_id, ""), operation, kind)
        example.target, example.summary, example.stored_reasons = target, summary, stored


# --- one action --------------------------------------------------------------------------------

class DraftInputError(Exception):
    """The action names a system or source that does not exist (the gate answers 400)."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field, self.message = field_name, message


def judge(*, policy: PolicySnapshot, proposal: dict, now: datetime | None = None) -> Decision:
    """The decision the gate would give this proposal now under `policy`. Reads only.

    Counters are today's, read without the gate's locks; the L2 sampling draw uses a fresh
    id, as a real request would get one.
    """
    from agents.models import DataSource, System
    from reviews.gate import WRITES_LAST_HOUR_SQL
    from reviews.models import ActionRequest

    now = now or timezone.now()
    system = proposal["system"]
    if system not in policy.system_ids and not System.objects.filter(slug=system).exists():
        raise DraftInputError("system", f"Unknown system '{system}'. Systems are registered "
                              "by an admin; ask for it to be added.")
    sources = list(proposal.get("sources") or [])
    unknown = [s for s in sources if s not in policy.sources
               and not DataSource.objects.filter(slug=s).exists()]
    if unknown:
        raise DraftInputError("sources", f"Unknown data source '{unknown[0]}'.")
    writes = 0
    limit = policy.max_writes_per_hour
    if proposal["kind"] == "execute" and limit:
        since = now - timedelta(hours=1)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(WRITES_LAST_HOUR_SQL, [policy.agent_id, since, limit])
                writes = cursor.fetchone()[0]
        else:
            writes = ActionRequest.objects.filter(
                agent_id=policy.agent_id, kind="execute", decision=ALLOW,
                created_at__gte=since)[:limit].count()
    spent = 0.0
    if policy.monthly_cost_budget is not None:
        spent = float(ActionRequest.objects.filter(
            agent_id=policy.agent_id, created_at__gte=_month_start(now))
            .aggregate(total=Sum("cost_usd"))["total"] or 0)
    amount = proposal.get("amount")
    return decide(policy, Action(
        request_id=str(uuid.uuid4()), system=system, operation=proposal["operation"],
        kind=proposal["kind"], target=proposal.get("target") or "",
        summary=proposal.get("summary") or "", changes=proposal.get("changes") or {},
        content=proposal.get("content") or "",
        amount=float(amount) if amount is not None else None,
        currency=proposal.get("currency") or "", confidence=proposal.get("confidence"),
        sources=tuple(sources)), Counters(writes_last_hour=writes, month_cost_usd=spent), now)
