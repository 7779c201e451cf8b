"""The policy engine: may this agent take this action? Pure: no ORM, no I/O, no clock.

`decide(policy, action, counters, now)` runs the gate's checks in order (DESIGN.md, "The
gate") and returns a `Decision`: the most restrictive outcome (block > review > allow) and a
reason {code, message} for every check that fired, in words a person understands.

Everything the engine needs arrives in plain frozen dataclasses, built by the gate service
(`reviews.gate`) from the database: the agent's `PolicySnapshot` (cached per process and
invalidated by `version`), the proposed `Action`, and the `Counters` the database counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

ALLOW, REVIEW, BLOCK = "allow", "review", "block"
KINDS = ("read", "draft", "recommend", "execute")  # least to most powerful


@dataclass(frozen=True)
class GuardrailRule:
    id: int
    name: str
    field: str  # amount, confidence, operation, target, kind or changes.<name>
    operator: str  # changed, eq, ne, gt, gte, lt, lte, in, contains
    value: Any
    effect: str  # review or block
    system: str | None = None  # system slug; None: any system
    operation: str = ""  # "": any operation
    route_to_group: str | None = None  # group name


@dataclass(frozen=True)
class SourceInfo:
    slug: str
    name: str
    approved: bool
    refreshed_at: datetime | None
    max_age: timedelta | None


@dataclass(frozen=True)
class PolicySnapshot:
    agent_id: int
    slug: str
    status: str  # proposed, pilot, live, paused, retired
    autonomy_level: int  # 1..4
    access: dict[str, str]  # system slug -> highest kind allowed
    sources: dict[str, SourceInfo]  # the sources the agent declared, by slug
    guardrails: tuple[GuardrailRule, ...]
    confidence_review_below: float
    confidence_block_below: float
    review_sample_rate: float
    max_writes_per_hour: int | None
    monthly_cost_budget: float | None
    version: int  # changes on every policy save; what a decision was judged under
    pause_reason: str = ""
    system_ids: dict[str, int] = field(default_factory=dict)  # slug -> id, for storing
    review_sla_hours: int = 24  # a review is due this long after the gate asked for it


@dataclass(frozen=True)
class Action:
    request_id: str  # the ActionRequest's public UUID: seeds L2 sampling
    system: str
    operation: str
    kind: str
    target: str = ""
    summary: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    amount: float | None = None
    currency: str = ""
    confidence: float | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Counters:
    writes_last_hour: int = 0  # execute actions of this agent allowed in the last hour
    month_cost_usd: float = 0.0  # cost_usd of this agent's actions this calendar month


@dataclass(frozen=True)
class Reason:
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Decision:
    outcome: str  # allow, review or block
    reasons: tuple[Reason, ...]
    sampled: bool = False  # L2: an allowed execute action picked for review afterwards
    route_to_group: str | None = None  # a review that only this group may decide
    fired_guardrail_ids: tuple[int, ...] = ()


#
# The engine. Everything below runs on every gate call: module-level tables, no regex, no
# copies of the snapshot, and each check appends (outcome, Reason) to one list.
#

_KIND_RANK: dict[str, int] = {kind: rank for rank, kind in enumerate(KINDS)}
_OUTCOME_RANK: dict[str, int] = {ALLOW: 0, REVIEW: 1, BLOCK: 2}
_RUNNING_STATUSES = frozenset({"pilot", "live"})
_CHANGES_PREFIX = "changes."
_CHANGES_PREFIX_LEN = len(_CHANGES_PREFIX)
_BASE_FIELDS = frozenset({"amount", "confidence", "operation", "target", "kind"})
_SHOW_MAX = 60  # characters of a value quoted in a message: reasons stay one line
_SAMPLE_SCALE = float(2**64)  # sample_draw reads 64 bits of the digest

# Coarsest first; used to say how old a source is in words.
_AGE_UNITS: tuple[tuple[str, timedelta], ...] = (
    ("day", timedelta(days=1)),
    ("hour", timedelta(hours=1)),
    ("minute", timedelta(minutes=1)),
    ("second", timedelta(seconds=1)),
)

Found = list[tuple[str, Reason]]  # (outcome, reason), in the order the checks fired


def decide(policy: PolicySnapshot, action: Action, counters: Counters,
           now: datetime) -> Decision:
    """Judge `action` under `policy`: the most restrictive outcome and every reason.

    Every check runs, even after a block, so the agent (and the reviewer) learn every reason
    at once; a paused, retired or not-started agent's status reason is always first.
    """
    found: Found = []
    _check_status(policy, found)
    _check_access(policy, action, found)
    _check_sources(policy, action, now, found)
    route_to_group, fired_ids = _check_guardrails(policy, action, found)
    _check_confidence(policy, action, found)
    _check_blast_radius(policy, action, counters, found)
    _check_budget(policy, counters, found)
    sampled = _check_autonomy(policy, action, found)

    outcome = ALLOW
    for fired_outcome, _ in found:
        if _OUTCOME_RANK[fired_outcome] > _OUTCOME_RANK[outcome]:
            outcome = fired_outcome
    return Decision(
        outcome=outcome,
        reasons=tuple(reason for _, reason in found),
        sampled=sampled and outcome == ALLOW,
        route_to_group=route_to_group if outcome == REVIEW else None,
        fired_guardrail_ids=fired_ids,
    )


def sample_draw(request_id: str) -> float:
    """The L2 sampling draw for a request, uniform in [0, 1): sampled when draw < rate.

    It is the first 64 bits of SHA-256(request_id) over 2**64, i.e. exactly
    `int(hashlib.sha256(request_id.encode()).hexdigest()[:16], 16) / 16**16`: the same
    request always gets the same answer, so tests, replays and auditors can predict it.
    """
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SAMPLE_SCALE


# --- 1. status -------------------------------------------------------------------------

def _check_status(policy: PolicySnapshot, found: Found) -> None:
    status = policy.status
    if status in _RUNNING_STATUSES:
        return
    if status == "paused":
        why = policy.pause_reason.strip().rstrip(".")
        said = f": {why}" if why else ""
        found.append((BLOCK, Reason("paused", f"Paused by its owners{said}. No action is "
                                              "allowed until it is resumed.")))
    elif status == "retired":
        found.append((BLOCK, Reason("retired", "Retired: this agent may no longer act.")))
    elif status == "proposed":
        found.append((BLOCK, Reason("not_started", "This agent is still proposed: it may act "
                                                   "once it is in pilot.")))
    else:  # a status this engine does not know: fail closed
        found.append((BLOCK, Reason("not_started", f"This agent's status is '{status}': it "
                                                   "may act only in pilot or live.")))


# --- 2. access (least privilege) -------------------------------------------------------

def _check_access(policy: PolicySnapshot, action: Action, found: Found) -> None:
    allowed = policy.access.get(action.system)
    if allowed is None:
        found.append((BLOCK, Reason("no_access", f"No access to system '{action.system}'")))
        return
    rank = _KIND_RANK.get(action.kind)
    if rank is None:  # the API validates kinds; the engine still must not crash on one
        found.append((BLOCK, Reason(
            "access_exceeded",
            f"'{action.kind}' is not a kind of action ({', '.join(KINDS)}); "
            f"in {action.system} its access is up to {allowed}")))
    elif rank > _KIND_RANK.get(allowed, -1):  # an unknown granted kind grants nothing
        found.append((BLOCK, Reason(
            "access_exceeded",
            f"'{action.kind}' in {action.system} is above its access: up to {allowed}")))


# --- 3. data sources -------------------------------------------------------------------

def _check_sources(policy: PolicySnapshot, action: Action, now: datetime,
                   found: Found) -> None:
    if not action.sources:
        return
    declared = policy.sources
    # dict.fromkeys: each cited source is judged once, in the order the agent cited them
    for slug in dict.fromkeys(action.sources):
        source = declared.get(slug)
        if source is None:
            found.append((BLOCK, Reason(
                "source_not_declared",
                f"Source '{slug}' is not one this agent declared")))
        elif not source.approved:
            found.append((BLOCK, Reason(
                "source_unapproved", f"Source '{source.name}' is not approved")))
        elif source.max_age is not None:
            if source.refreshed_at is None:
                found.append((REVIEW, Reason(
                    "source_stale",
                    f"Source '{source.name}' has never been refreshed; it may be at most "
                    f"{_duration(source.max_age)} old")))
                continue
            age = now - source.refreshed_at
            if age > source.max_age:  # exactly max_age old is still fresh
                age_words, max_words = _ages(age, source.max_age)
                found.append((REVIEW, Reason(
                    "source_stale",
                    f"Source '{source.name}' was refreshed {age_words} ago; it may be at "
                    f"most {max_words} old")))


def _ages(age: timedelta, max_age: timedelta) -> tuple[str, str]:
    """Both durations in the coarsest unit that still shows age > max_age (12 vs 7 days,
    but 27 vs 24 hours rather than '1 day ago; at most 1 day')."""
    for unit_name, unit in _AGE_UNITS:
        max_count = max_age // unit
        if max_count >= 1 and age // unit > max_count:
            return _plural(age // unit, unit_name), _plural(max_count, unit_name)
    return _duration(age), _duration(max_age)


def _duration(span: timedelta) -> str:
    for unit_name, unit in _AGE_UNITS:
        if span >= unit:
            return _plural(span // unit, unit_name)
    return _plural(int(span.total_seconds()), "second")


def _plural(count: int, unit_name: str) -> str:
    return f"{count} {unit_name}" if count == 1 else f"{count} {unit_name}s"


# --- 4. guardrails ---------------------------------------------------------------------

def _check_guardrails(policy: PolicySnapshot, action: Action,
                      found: Found) -> tuple[str | None, tuple[int, ...]]:
    route_to_group: str | None = None
    fired_ids: list[int] = []
    for rule in policy.guardrails:
        if rule.system is not None and rule.system != action.system:
            continue
        if rule.operation and rule.operation != action.operation:
            continue
        condition = _condition(rule, action)
        if condition is None:
            continue
        # Only `review` reviews; any other effect (a typo in the database) fails closed.
        effect = REVIEW if rule.effect == REVIEW else BLOCK
        if effect == REVIEW and rule.route_to_group:
            then = f"review by {rule.route_to_group}"
            if route_to_group is None:
                route_to_group = rule.route_to_group
        else:
            then = effect
        fired_ids.append(rule.id)
        found.append((effect, Reason("guardrail",
                                     f"Guardrail '{rule.name}': {condition} → {then}")))
    return route_to_group, tuple(fired_ids)


def _condition(rule: GuardrailRule, action: Action) -> str | None:
    """The fired condition in words ("amount 650 > 500"), or None when the rule holds not.

    A missing or None value never fires (except `changed`, which asks only whether the key
    is there); nor does a type that cannot be compared. Nothing here raises.
    """
    name = rule.field
    if name.startswith(_CHANGES_PREFIX):
        key = name[_CHANGES_PREFIX_LEN:]
        if rule.operator == "changed":
            return f"{name} changed" if key in action.changes else None
        actual = action.changes.get(key)
    elif name in _BASE_FIELDS:
        actual = getattr(action, name)
        if actual == "":  # target defaults to "": the agent named none
            actual = None
    else:
        return None  # a field this engine does not know
    if actual is None:
        return None  # `changed` on a base field lands here too: base fields always exist

    operator = rule.operator
    expected = rule.value
    compare = _ORDERINGS.get(operator)
    if compare is not None:
        left, right = _number(actual), _number(expected)
        if left is None or right is None or not compare(left, right):
            return None
        return f"{name} {_show(actual)} {_ORDERING_SYMBOLS[operator]} {_show(expected)}"
    if operator == "eq":
        return f"{name} is {_show(expected)}" if _equals(actual, expected) else None
    if operator == "ne":
        if _equals(actual, expected):
            return None
        return f"{name} {_show(actual)} is not {_show(expected)}"
    if operator == "in":
        if not isinstance(expected, list | tuple):
            return None  # `in` a string would be a substring test: not what the rule means
        if not any(_equals(actual, item) for item in expected):
            return None
        return f"{name} {_show(actual)} is one of {_show(expected)}"
    if operator == "contains":
        return f"{name} contains {_show(expected)}" if _contains(actual, expected) else None
    return None  # an operator this engine does not know (the model's choices forbid it)


def _number(value: Any) -> int | float | None:
    """A number to order by, or None. Numeric strings count, so an agent cannot slip past
    "amount > 500" by sending "650"; booleans do not (True is not 1 here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equals(actual: Any, expected: Any) -> bool:
    # A number on either side compares numerically ("500" eq 500), otherwise plain ==.
    if _is_number(actual) or _is_number(expected):
        left, right = _number(actual), _number(expected)
        return left is not None and right is not None and left == right
    return bool(actual == expected)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        # Case-insensitive: "contains health" must catch "Health score".
        return isinstance(expected, str) and expected.casefold() in actual.casefold()
    if isinstance(actual, list | tuple):
        return any(_equals(item, expected) for item in actual)
    return False


def _gt(left: float, right: float) -> bool:
    return left > right


def _gte(left: float, right: float) -> bool:
    return left >= right


def _lt(left: float, right: float) -> bool:
    return left < right


def _lte(left: float, right: float) -> bool:
    return left <= right


_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "gt": _gt, "gte": _gte, "lt": _lt, "lte": _lte}
_ORDERING_SYMBOLS: dict[str, str] = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def _show(value: Any) -> str:
    """A value as a person reads it in a reason: 650 not 650.0, strings quoted, short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = _num(value)
    elif isinstance(value, str):
        text = f"'{value}'"
    elif isinstance(value, list | tuple):
        text = ", ".join(_show(item) for item in value)
    else:
        text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[:_SHOW_MAX - 1] + "…"


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".10g")


# --- 5. confidence ---------------------------------------------------------------------

def _check_confidence(policy: PolicySnapshot, action: Action, found: Found) -> None:
    confidence = action.confidence
    if confidence is None:
        return
    # `not >=` rather than `<`: a NaN confidence fails closed into a block.
    if not confidence >= policy.confidence_block_below:
        found.append((BLOCK, Reason(
            "confidence_block",
            f"confidence {_num(confidence)} is below {_num(policy.confidence_block_below)}: "
            "actions this unsure are blocked")))
    elif confidence < policy.confidence_review_below:
        found.append((REVIEW, Reason(
            "confidence_review",
            f"confidence {_num(confidence)} is below {_num(policy.confidence_review_below)}: "
            "a person reviews actions this unsure")))


# --- 6. blast radius -------------------------------------------------------------------

def _check_blast_radius(policy: PolicySnapshot, action: Action, counters: Counters,
                        found: Found) -> None:
    limit = policy.max_writes_per_hour
    if limit is None or action.kind != "execute":
        return
    done = counters.writes_last_hour
    if done >= limit:
        noun = "action" if done == 1 else "actions"
        found.append((REVIEW, Reason(
            "blast_radius",
            f"{done} execute {noun} allowed in the last hour; the limit is {limit}")))


# --- 7. budget -------------------------------------------------------------------------

def _check_budget(policy: PolicySnapshot, counters: Counters, found: Found) -> None:
    budget = policy.monthly_cost_budget
    if budget is None or counters.month_cost_usd < budget:
        return
    found.append((REVIEW, Reason(
        "budget",
        f"${counters.month_cost_usd:,.2f} spent this month of a ${budget:,.2f} budget")))


# --- 8. autonomy -----------------------------------------------------------------------

def _check_autonomy(policy: PolicySnapshot, action: Action, found: Found) -> bool:
    """Add the autonomy reason, if any; True when an L2 action is sampled."""
    level = policy.autonomy_level
    if level in (3, 4):
        return False
    if level == 2:
        # Sampled only when it would otherwise run unseen: an allowed execute action.
        if found or action.kind != "execute":
            return False
        return sample_draw(action.request_id) < policy.review_sample_rate
    # L1 (and any unknown level, failing closed): a person approves every action, except
    # reads. Documented decision: a read changes nothing and is already bounded by
    # least-privilege access and the source checks, so reviewing it adds delay, not safety.
    if action.kind == "read":
        return False
    message = ("L1: a person approves every action" if level == 1 else
               f"Autonomy level {level} is not one of L1–L4: a person approves every action")
    found.append((REVIEW, Reason("autonomy", message)))
    return False
