"""The pure policy engine (agents/policy.py): every check, every operator, how they combine.

No database: the engine takes plain dataclasses, so these tests build them directly.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents import policy as policy_module
from agents.policy import (
    ALLOW,
    BLOCK,
    KINDS,
    REVIEW,
    Action,
    Counters,
    Decision,
    GuardrailRule,
    PolicySnapshot,
    Reason,
    SourceInfo,
    decide,
    sample_draw,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def source(slug: str, name: str, *, approved: bool = True, age: timedelta | None = DAY,
           max_age: timedelta | None = 7 * DAY) -> SourceInfo:
    return SourceInfo(slug=slug, name=name, approved=approved,
                      refreshed_at=None if age is None else NOW - age, max_age=max_age)


SOURCES = {
    s.slug: s for s in (
        source("crm-accounts", "CRM accounts"),
        source("no-max-age", "Ticket history", age=400 * DAY, max_age=None),
        source("web-analytics", "Web analytics export", approved=False),
        source("finance", "Finance warehouse", age=12 * DAY),
        source("never", "Never refreshed", age=None),
    )
}


def make_policy(**overrides: Any) -> PolicySnapshot:
    """A live L3 agent with nothing to complain about; tests override what they probe."""
    values: dict[str, Any] = dict(
        agent_id=1, slug="probe", status="live", autonomy_level=3,
        access={"crm": "execute", "helpdesk": "draft", "billing": "read"},
        sources=SOURCES, guardrails=(), confidence_review_below=0.7,
        confidence_block_below=0.3, review_sample_rate=0.2, max_writes_per_hour=100,
        monthly_cost_budget=500.0, version=1)
    values.update(overrides)
    return PolicySnapshot(**values)


def make_action(**overrides: Any) -> Action:
    values: dict[str, Any] = dict(request_id="req-1", system="crm", operation="update_record",
                                  kind="execute")
    values.update(overrides)
    return Action(**values)


def rule(field: str, operator: str, value: Any = None, *, effect: str = REVIEW,
         id: int = 1, name: str = "Rule", **scope: Any) -> GuardrailRule:
    return GuardrailRule(id=id, name=name, field=field, operator=operator, value=value,
                         effect=effect, **scope)


def run(policy: PolicySnapshot | None = None, action: Action | None = None,
        counters: Counters | None = None) -> Decision:
    return decide(policy or make_policy(), action or make_action(), counters or Counters(),
                  NOW)


def codes(decision: Decision) -> list[str]:
    return [reason.code for reason in decision.reasons]


def request_id_for(rate: float, *, sampled: bool) -> str:
    """A request id whose draw lands on the wanted side of `rate`."""
    for n in itertools.count():
        candidate = f"req-{n}"
        if (sample_draw(candidate) < rate) == sampled:
            return candidate
    raise AssertionError("unreachable")


def test_clean_action_is_allowed_with_no_reasons() -> None:
    assert run() == Decision(ALLOW, (), False, None, ())


# --- 1. status -------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "pause_reason", "outcome", "reason"), [
    ("pilot", "", ALLOW, None),
    ("live", "", ALLOW, None),
    ("paused", "Wrong stages in the CRM", BLOCK,
     Reason("paused", "Paused by its owners: Wrong stages in the CRM. No action is allowed "
                      "until it is resumed.")),
    ("paused", "Wrong stages.", BLOCK,
     Reason("paused", "Paused by its owners: Wrong stages. No action is allowed until it is "
                      "resumed.")),
    ("paused", "", BLOCK,
     Reason("paused", "Paused by its owners. No action is allowed until it is resumed.")),
    ("retired", "", BLOCK, Reason("retired", "Retired: this agent may no longer act.")),
    ("proposed", "", BLOCK,
     Reason("not_started", "This agent is still proposed: it may act once it is in pilot.")),
    ("archived", "", BLOCK,
     Reason("not_started", "This agent's status is 'archived': it may act only in pilot or "
                           "live.")),
], ids=["pilot", "live", "paused", "paused-reason-with-full-stop", "paused-without-reason",
        "retired", "proposed", "unknown-status-fails-closed"])
def test_status(status: str, pause_reason: str, outcome: str, reason: Reason | None) -> None:
    decision = run(make_policy(status=status, pause_reason=pause_reason))
    assert decision.outcome == outcome
    assert decision.reasons == ((reason,) if reason else ())


@pytest.mark.parametrize("status", ["paused", "retired", "proposed"])
def test_stopped_agent_reports_status_first_and_every_other_reason(status: str) -> None:
    decision = run(make_policy(status=status, autonomy_level=1),
                   make_action(system="marketing", confidence=0.5))
    assert decision.outcome == BLOCK
    assert codes(decision)[0] in {"paused", "retired", "not_started"}
    assert codes(decision)[1:] == ["no_access", "confidence_review", "autonomy"]


# --- 2. access -------------------------------------------------------------------------

@pytest.mark.parametrize(("granted", "kind"), list(itertools.product(KINDS, KINDS)),
                         ids=lambda kind: kind)
def test_access_allows_up_to_the_granted_kind(granted: str, kind: str) -> None:
    decision = run(make_policy(access={"crm": granted}), make_action(kind=kind))
    if KINDS.index(kind) <= KINDS.index(granted):
        assert decision.outcome == ALLOW and decision.reasons == ()
    else:
        assert decision.outcome == BLOCK
        assert decision.reasons == (Reason(
            "access_exceeded", f"'{kind}' in crm is above its access: up to {granted}"),)


@pytest.mark.parametrize(("access", "system", "kind", "reason"), [
    ({"crm": "execute"}, "billing", "read", Reason("no_access", "No access to system 'billing'")),
    ({}, "crm", "read", Reason("no_access", "No access to system 'crm'")),
    ({"crm": "draft"}, "crm", "delete", Reason(
        "access_exceeded", "'delete' is not a kind of action (read, draft, recommend, "
                           "execute); in crm its access is up to draft")),
    ({"crm": "admin"}, "crm", "read", Reason(
        "access_exceeded", "'read' in crm is above its access: up to admin")),
], ids=["other-system", "no-access-at-all", "unknown-kind", "unknown-granted-kind-grants-nothing"])
def test_access_blocks(access: dict[str, str], system: str, kind: str, reason: Reason) -> None:
    decision = run(make_policy(access=access), make_action(system=system, kind=kind))
    assert decision.outcome == BLOCK
    assert decision.reasons == (reason,)


# --- 3. sources ------------------------------------------------------------------------

@pytest.mark.parametrize(("sources", "outcome", "reasons"), [
    (("crm-accounts",), ALLOW, ()),
    (("no-max-age",), ALLOW, ()),
    (("unknown",), BLOCK,
     (Reason("source_not_declared", "Source 'unknown' is not one this agent declared"),)),
    (("web-analytics",), BLOCK,
     (Reason("source_unapproved", "Source 'Web analytics export' is not approved"),)),
    (("finance",), REVIEW,
     (Reason("source_stale", "Source 'Finance warehouse' was refreshed 12 days ago; it may "
                             "be at most 7 days old"),)),
    (("never",), REVIEW,
     (Reason("source_stale", "Source 'Never refreshed' has never been refreshed; it may be "
                             "at most 7 days old"),)),
    (("finance", "finance"), REVIEW,
     (Reason("source_stale", "Source 'Finance warehouse' was refreshed 12 days ago; it may "
                             "be at most 7 days old"),)),
    (("finance", "web-analytics", "crm-accounts", "unknown"), BLOCK,
     (Reason("source_stale", "Source 'Finance warehouse' was refreshed 12 days ago; it may "
                             "be at most 7 days old"),
      Reason("source_unapproved", "Source 'Web analytics export' is not approved"),
      Reason("source_not_declared", "Source 'unknown' is not one this agent declared"))),
], ids=["fresh", "no-max-age-never-stale", "not-declared", "unapproved", "stale",
        "never-refreshed", "cited-twice-reported-once", "every-problem-in-citation-order"])
def test_sources(sources: tuple[str, ...], outcome: str, reasons: tuple[Reason, ...]) -> None:
    decision = run(action=make_action(sources=sources))
    assert decision.outcome == outcome
    assert decision.reasons == reasons


def test_unapproved_stale_source_is_only_reported_unapproved() -> None:
    stale_unapproved = source("s", "Old and unapproved", approved=False, age=30 * DAY)
    decision = run(make_policy(sources={"s": stale_unapproved}), make_action(sources=("s",)))
    assert codes(decision) == ["source_unapproved"]


@pytest.mark.parametrize(("age", "max_age", "message"), [
    (7 * DAY, 7 * DAY, None),
    (7 * DAY + timedelta(microseconds=1), 7 * DAY,
     "was refreshed 7 days ago; it may be at most 7 days old"),
    (-DAY, DAY, None),
    (27 * timedelta(hours=1), DAY, "was refreshed 27 hours ago; it may be at most 24 hours old"),
    (2 * DAY, DAY, "was refreshed 2 days ago; it may be at most 1 day old"),
    (90 * timedelta(minutes=1), timedelta(hours=1),
     "was refreshed 90 minutes ago; it may be at most 60 minutes old"),
], ids=["exactly-max-age-is-fresh", "a-microsecond-over-is-stale", "refreshed-in-the-future",
        "hours-when-days-would-read-equal", "days", "minutes"])
def test_source_age_edges(age: timedelta, max_age: timedelta, message: str | None) -> None:
    decision = run(make_policy(sources={"s": source("s", "S", age=age, max_age=max_age)}),
                   make_action(sources=("s",)))
    if message is None:
        assert decision.reasons == ()
    else:
        assert decision.reasons == (Reason("source_stale", f"Source 'S' {message}"),)


# --- 4. guardrails: operators ----------------------------------------------------------

# (field, operator, value, action fields, fires)
OPERATOR_CASES: list[tuple[str, str, Any, dict[str, Any], bool]] = [
    ("changes.stage", "changed", None, {"changes": {"stage": "won"}}, True),
    ("changes.stage", "changed", None, {"changes": {"stage": None}}, True),
    ("changes.stage", "changed", None, {"changes": {"owner": "ann"}}, False),
    ("changes.stage", "changed", None, {}, False),
    ("amount", "changed", None, {"amount": 5}, False),
    ("kind", "eq", "execute", {"kind": "execute"}, True),
    ("kind", "eq", "execute", {"kind": "draft", "system": "helpdesk"}, False),
    ("amount", "eq", 500, {"amount": 500.0}, True),
    ("changes.size", "eq", 500, {"changes": {"size": "500"}}, True),
    ("changes.flag", "eq", 1, {"changes": {"flag": True}}, False),
    ("changes.x", "eq", None, {"changes": {"x": None}}, False),
    ("changes.currency", "ne", "USD", {"changes": {"currency": "EUR"}}, True),
    ("changes.currency", "ne", "USD", {"changes": {"currency": "USD"}}, False),
    ("changes.currency", "ne", "USD", {}, False),
    ("changes.currency", "ne", "USD", {"changes": {"currency": None}}, False),
    ("changes.currency", "ne", "USD", {"changes": {"currency": 5}}, True),
    ("target", "ne", "acme", {}, False),
    ("amount", "gt", 500, {"amount": 650}, True),
    ("amount", "gt", 500, {"amount": 500}, False),
    ("amount", "gt", 500, {}, False),
    ("amount", "gt", "500", {"amount": 650}, True),
    ("amount", "gt", "lots", {"amount": 650}, False),
    ("amount", "gt", [500], {"amount": 650}, False),
    ("amount", "gt", None, {"amount": 650}, False),
    ("changes.size", "gt", 50000, {"changes": {"size": "60000"}}, True),
    ("changes.size", "gt", 50000, {"changes": {"size": "sixty thousand"}}, False),
    ("changes.size", "gt", 50000, {"changes": {"size": [60000]}}, False),
    ("changes.size", "gt", 50000, {"changes": {"size": {"n": 60000}}}, False),
    ("changes.size", "gt", 0, {"changes": {"size": True}}, False),
    ("changes.size", "gt", 0, {"changes": {"size": "nan"}}, False),
    ("target", "gt", 5, {"target": "acme"}, False),
    ("amount", "gte", 500, {"amount": 500}, True),
    ("amount", "gte", 500, {"amount": 499.99}, False),
    ("confidence", "lt", 0.9, {"confidence": 0.8}, True),
    ("confidence", "lt", 0.9, {"confidence": 0.9}, False),
    ("confidence", "lt", 0.9, {}, False),
    ("confidence", "lte", 0.9, {"confidence": 0.9}, True),
    ("confidence", "lte", 0.9, {"confidence": 0.95}, False),
    ("target", "in", ["acme", "globex"], {"target": "globex"}, True),
    ("target", "in", ["acme", "globex"], {"target": "initech"}, False),
    ("target", "in", ["acme", "globex"], {}, False),
    ("target", "in", "acme-corp", {"target": "acme"}, False),
    ("changes.tag", "in", ["legal", "press"], {"changes": {"tag": ["legal"]}}, False),
    ("changes.tag", "in", [1, 2], {"changes": {"tag": "2"}}, True),
    ("changes.tag", "in", None, {"changes": {"tag": "legal"}}, False),
    ("changes.criteria", "contains", "health", {"changes": {"criteria": "Health score"}}, True),
    ("changes.criteria", "contains", "health", {"changes": {"criteria": "age > 30"}}, False),
    ("changes.criteria", "contains", "health", {"changes": {"criteria": ["age", "health"]}},
     True),
    ("changes.criteria", "contains", 5, {"changes": {"criteria": [1, 5.0]}}, True),
    ("changes.criteria", "contains", "health", {"changes": {"criteria": ["healthy"]}}, False),
    ("changes.criteria", "contains", 5, {"changes": {"criteria": "15"}}, False),
    ("changes.criteria", "contains", "health", {"changes": {"criteria": 42}}, False),
    ("changes.criteria", "contains", "health", {}, False),
    ("summary", "eq", "x", {"summary": "x"}, False),
    ("amount", "between", [1, 2], {"amount": 1.5}, False),
]


def _operator_case_id(case: tuple[str, str, Any, dict[str, Any], bool]) -> str:
    field, operator, value, action_fields, fires = case
    given = ",".join(f"{k}={v!r}" for k, v in action_fields.items()) or "missing"
    return f"{field}-{operator}-{value!r}-given-{given}-{'fires' if fires else 'quiet'}"


@pytest.mark.parametrize(("field", "operator", "value", "action_fields", "fires"),
                         OPERATOR_CASES, ids=[_operator_case_id(c) for c in OPERATOR_CASES])
def test_guardrail_operator(field: str, operator: str, value: Any,
                            action_fields: dict[str, Any], fires: bool) -> None:
    guardrail = rule(field, operator, value, id=7)
    decision = run(make_policy(guardrails=(guardrail,)), make_action(**action_fields))
    if fires:
        assert decision.outcome == REVIEW
        assert codes(decision) == ["guardrail"]
        assert decision.fired_guardrail_ids == (7,)
    else:
        assert decision.outcome == ALLOW
        assert decision.reasons == () and decision.fired_guardrail_ids == ()


WEIRD_VALUES: list[Any] = [None, "", "x", "12", "nan", "inf", 0, -1, 10**400, 1.5,
                           float("nan"), True, [], [1, "a"], {}, {"a": [1]}, ("t",)]


@pytest.mark.parametrize("operator",
                         ["changed", "eq", "ne", "gt", "gte", "lt", "lte", "in", "contains",
                          "nonsense"])
def test_guardrail_operator_never_raises(operator: str) -> None:
    for value, actual in itertools.product(WEIRD_VALUES, WEIRD_VALUES):
        guardrails = (rule("changes.x", operator, value), rule("target", operator, value, id=2))
        decision = run(make_policy(guardrails=guardrails),
                       make_action(changes={"x": actual}, target=str(actual)))
        assert decision.outcome in {ALLOW, REVIEW}


@pytest.mark.parametrize(("guardrail", "action_fields", "message"), [
    (rule("amount", "gt", 500, name="Refunds over 500 need a manager",
          route_to_group="Managers"),
     {"amount": 650.0},
     "Guardrail 'Refunds over 500 need a manager': amount 650 > 500 → review by Managers"),
    (rule("changes.stage", "changed", name="Stage changes need approval"),
     {"changes": {"stage": "won"}},
     "Guardrail 'Stage changes need approval': changes.stage changed → review"),
    (rule("changes.amount", "changed", name="Amounts are never edited", effect=BLOCK,
          route_to_group="Managers"),
     {"changes": {"amount": 1}},
     "Guardrail 'Amounts are never edited': changes.amount changed → block"),
    (rule("amount", "gte", 500, name="G"), {"amount": 500.5},
     "Guardrail 'G': amount 500.5 ≥ 500 → review"),
    (rule("confidence", "lt", 0.9, name="G"), {"confidence": 0.85},
     "Guardrail 'G': confidence 0.85 < 0.9 → review"),
    (rule("confidence", "lte", 0.9, name="G"), {"confidence": 0.9},
     "Guardrail 'G': confidence 0.9 ≤ 0.9 → review"),
    (rule("changes.size", "gt", 50000, name="G"), {"changes": {"size": "60000"}},
     "Guardrail 'G': changes.size '60000' > 50000 → review"),
    (rule("kind", "eq", "execute", name="Never executes"), {},
     "Guardrail 'Never executes': kind is 'execute' → review"),
    (rule("changes.currency", "ne", "USD", name="Only USD"), {"changes": {"currency": "EUR"}},
     "Guardrail 'Only USD': changes.currency 'EUR' is not 'USD' → review"),
    (rule("target", "in", ["acme-corp", "globex"], name="Strategic"), {"target": "globex"},
     "Guardrail 'Strategic': target 'globex' is one of 'acme-corp', 'globex' → review"),
    (rule("changes.criteria", "contains", "health", name="No health"),
     {"changes": {"criteria": "Health score > 3"}},
     "Guardrail 'No health': changes.criteria contains 'health' → review"),
    (rule("changes.note", "ne", "ok", name="Long"), {"changes": {"note": "n" * 500}},
     "Guardrail 'Long': changes.note '" + "n" * 58 + "… is not 'ok' → review"),
    (rule("changes.bonus", "eq", True, name="Bonus flag"), {"changes": {"bonus": True}},
     "Guardrail 'Bonus flag': changes.bonus is true → review"),
    (rule("changes.x", "eq", "y", name="Odd effect", effect="allow"),
     {"changes": {"x": "y"}}, "Guardrail 'Odd effect': changes.x is 'y' → block"),
], ids=["gt-routed", "changed", "block-ignores-group", "gte-float", "lt", "lte",
        "numeric-string-shown-as-sent", "eq", "ne", "in", "contains-ignores-case",
        "long-value-cut", "boolean", "unknown-effect-fails-closed-to-block"])
def test_guardrail_messages(guardrail: GuardrailRule, action_fields: dict[str, Any],
                            message: str) -> None:
    decision = run(make_policy(guardrails=(guardrail,)), make_action(**action_fields))
    assert decision.reasons == (Reason("guardrail", message),)


# --- 4. guardrails: scope, effect, routing ---------------------------------------------

@pytest.mark.parametrize(("scope", "system", "operation", "fires"), [
    ({}, "crm", "update_record", True),
    ({}, "helpdesk", "reply", True),
    ({"system": "crm"}, "crm", "update_record", True),
    ({"system": "crm"}, "helpdesk", "update_record", False),
    ({"operation": "merge_accounts"}, "crm", "merge_accounts", True),
    ({"operation": "merge_accounts"}, "crm", "update_record", False),
    ({"system": "crm", "operation": "merge_accounts"}, "crm", "merge_accounts", True),
    ({"system": "crm", "operation": "merge_accounts"}, "helpdesk", "merge_accounts", False),
    ({"system": "crm", "operation": "merge_accounts"}, "crm", "update_record", False),
], ids=["any-system-any-operation", "any-system-other-system", "system-match",
        "system-mismatch", "operation-match", "operation-mismatch", "both-match",
        "both-wrong-system", "both-wrong-operation"])
def test_guardrail_scope(scope: dict[str, str], system: str, operation: str,
                         fires: bool) -> None:
    guardrail = rule("changes.stage", "changed", **scope)
    decision = run(make_policy(access={"crm": "execute", "helpdesk": "execute"},
                               guardrails=(guardrail,)),
                   make_action(system=system, operation=operation, changes={"stage": "won"}))
    assert (codes(decision) == ["guardrail"]) is fires


@pytest.mark.parametrize(("guardrails", "outcome", "route_to_group", "fired_ids"), [
    ((rule("amount", "gt", 0, id=1, effect=REVIEW),
      rule("amount", "gt", 0, id=2, effect=REVIEW, route_to_group="Managers"),
      rule("amount", "gt", 0, id=3, effect=REVIEW, route_to_group="Legal")),
     REVIEW, "Managers", (1, 2, 3)),
    ((rule("amount", "gt", 0, id=1, effect=BLOCK, route_to_group="Legal"),
      rule("amount", "gt", 0, id=2, effect=REVIEW)),
     BLOCK, None, (1, 2)),
    ((rule("amount", "gt", 0, id=1, effect=REVIEW, route_to_group="Managers"),
      rule("amount", "gt", 0, id=2, effect=BLOCK)),
     BLOCK, None, (1, 2)),
    ((rule("amount", "gt", 1000, id=1, effect=REVIEW, route_to_group="Managers"),
      rule("amount", "gt", 0, id=2, effect=REVIEW, route_to_group="Legal")),
     REVIEW, "Legal", (2,)),
    ((rule("amount", "gt", 0, id=1, effect=REVIEW),), REVIEW, None, (1,)),
], ids=["first-routed-review-rule-wins", "block-rule-group-is-not-a-route",
        "block-beats-routed-review", "route-of-a-rule-that-did-not-fire-is-ignored",
        "unrouted-review"])
def test_guardrail_effects_and_routing(guardrails: tuple[GuardrailRule, ...], outcome: str,
                                       route_to_group: str | None,
                                       fired_ids: tuple[int, ...]) -> None:
    decision = run(make_policy(guardrails=guardrails), make_action(amount=10))
    assert decision.outcome == outcome
    assert decision.route_to_group == route_to_group
    assert decision.fired_guardrail_ids == fired_ids
    assert codes(decision) == ["guardrail"] * len(fired_ids)


def test_route_is_dropped_when_another_check_blocks() -> None:
    routed = rule("amount", "gt", 0, route_to_group="Managers")
    decision = run(make_policy(guardrails=(routed,), status="paused"), make_action(amount=5))
    assert decision.outcome == BLOCK
    assert decision.route_to_group is None
    assert decision.fired_guardrail_ids == (1,)


# --- 5. confidence ---------------------------------------------------------------------

@pytest.mark.parametrize(("confidence", "reason"), [
    (None, None),
    (0.95, None),
    (0.7, None),
    (0.69, Reason("confidence_review",
                  "confidence 0.69 is below 0.7: a person reviews actions this unsure")),
    (0.3, Reason("confidence_review",
                 "confidence 0.3 is below 0.7: a person reviews actions this unsure")),
    (0.25, Reason("confidence_block",
                  "confidence 0.25 is below 0.3: actions this unsure are blocked")),
    (0.0, Reason("confidence_block",
                 "confidence 0 is below 0.3: actions this unsure are blocked")),
    (float("nan"), Reason("confidence_block",
                          "confidence nan is below 0.3: actions this unsure are blocked")),
], ids=["none-given", "confident", "at-review-threshold", "below-review", "at-block-threshold",
        "below-block", "zero", "nan-fails-closed"])
def test_confidence(confidence: float | None, reason: Reason | None) -> None:
    decision = run(action=make_action(confidence=confidence))
    assert decision.reasons == ((reason,) if reason else ())
    expected = {None: ALLOW, "confidence_review": REVIEW, "confidence_block": BLOCK}
    assert decision.outcome == expected[reason.code if reason else None]


# --- 6. blast radius -------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "limit", "writes", "message"), [
    ("execute", 100, 99, None),
    ("execute", 100, 100, "100 execute actions allowed in the last hour; the limit is 100"),
    ("execute", 100, 150, "150 execute actions allowed in the last hour; the limit is 100"),
    ("execute", 1, 1, "1 execute action allowed in the last hour; the limit is 1"),
    ("execute", 0, 0, "0 execute actions allowed in the last hour; the limit is 0"),
    ("execute", None, 10_000, None),
    ("draft", 100, 500, None),
    ("read", 100, 500, None),
], ids=["under", "at-limit", "over", "singular", "zero-limit", "no-limit", "draft-not-counted",
        "read-not-counted"])
def test_blast_radius(kind: str, limit: int | None, writes: int, message: str | None) -> None:
    decision = run(make_policy(max_writes_per_hour=limit), make_action(kind=kind),
                   Counters(writes_last_hour=writes))
    assert decision.reasons == ((Reason("blast_radius", message),) if message else ())
    assert decision.outcome == (REVIEW if message else ALLOW)


# --- 7. budget -------------------------------------------------------------------------

@pytest.mark.parametrize(("budget", "spent", "kind", "message"), [
    (500.0, 499.99, "execute", None),
    (500.0, 500.0, "execute", "$500.00 spent this month of a $500.00 budget"),
    (500.0, 512.4, "execute", "$512.40 spent this month of a $500.00 budget"),
    (500.0, 512.4, "read", "$512.40 spent this month of a $500.00 budget"),
    (1000, 1234.5, "draft", "$1,234.50 spent this month of a $1,000.00 budget"),
    (None, 99_999.0, "execute", None),
], ids=["under", "at-budget", "over", "reads-count-too", "thousands", "no-budget"])
def test_budget(budget: float | None, spent: float, kind: str, message: str | None) -> None:
    decision = run(make_policy(monthly_cost_budget=budget), make_action(kind=kind),
                   Counters(month_cost_usd=spent))
    assert decision.reasons == ((Reason("budget", message),) if message else ())
    assert decision.outcome == (REVIEW if message else ALLOW)


# --- 8. autonomy -----------------------------------------------------------------------

L1 = Reason("autonomy", "L1: a person approves every action")


@pytest.mark.parametrize(("level", "kind", "outcome", "reasons"), [
    (1, "read", ALLOW, ()),
    (1, "draft", REVIEW, (L1,)),
    (1, "recommend", REVIEW, (L1,)),
    (1, "execute", REVIEW, (L1,)),
    (2, "read", ALLOW, ()),
    (2, "draft", ALLOW, ()),
    (2, "execute", ALLOW, ()),
    (3, "execute", ALLOW, ()),
    (4, "execute", ALLOW, ()),
    (0, "draft", REVIEW,
     (Reason("autonomy", "Autonomy level 0 is not one of L1–L4: a person approves every "
                         "action"),)),
], ids=["L1-read-passes", "L1-draft", "L1-recommend", "L1-execute", "L2-read", "L2-draft",
        "L2-execute", "L3", "L4", "unknown-level-fails-closed"])
def test_autonomy(level: int, kind: str, outcome: str, reasons: tuple[Reason, ...]) -> None:
    # Rate 0: L2 never samples here; sampling has its own tests below.
    decision = run(make_policy(autonomy_level=level, review_sample_rate=0.0),
                   make_action(kind=kind))
    assert decision.outcome == outcome
    assert decision.reasons == reasons
    assert decision.sampled is False


@pytest.mark.parametrize(("kind", "rate", "sampled"), [
    ("execute", 1.0, True),
    ("execute", 0.0, False),
    ("draft", 1.0, False),
    ("recommend", 1.0, False),
    ("read", 1.0, False),
], ids=["execute-always", "execute-never", "draft-not-sampled", "recommend-not-sampled",
        "read-not-sampled"])
def test_l2_samples_only_allowed_execute_actions(kind: str, rate: float, sampled: bool) -> None:
    decision = run(make_policy(autonomy_level=2, review_sample_rate=rate),
                   make_action(kind=kind))
    assert decision.outcome == ALLOW
    assert decision.reasons == ()
    assert decision.sampled is sampled


@pytest.mark.parametrize(("level", "sampled"), [(2, True), (3, False), (4, False)],
                         ids=["L2", "L3", "L4"])
def test_only_l2_samples(level: int, sampled: bool) -> None:
    decision = run(make_policy(autonomy_level=level, review_sample_rate=1.0))
    assert decision.sampled is sampled


@pytest.mark.parametrize(("policy_changes", "action_changes", "counters", "outcome"), [
    ({}, {"confidence": 0.5}, Counters(), REVIEW),
    ({"guardrails": (rule("amount", "gt", 0),)}, {"amount": 5}, Counters(), REVIEW),
    ({}, {}, Counters(writes_last_hour=100), REVIEW),
    ({}, {}, Counters(month_cost_usd=600.0), REVIEW),
    ({"status": "paused"}, {}, Counters(), BLOCK),
    ({}, {"sources": ("web-analytics",)}, Counters(), BLOCK),
], ids=["confidence-review", "guardrail-review", "blast-radius", "budget", "paused",
        "unapproved-source"])
def test_l2_never_samples_when_something_else_fired(policy_changes: dict[str, Any],
                                                    action_changes: dict[str, Any],
                                                    counters: Counters, outcome: str) -> None:
    decision = run(make_policy(autonomy_level=2, review_sample_rate=1.0, **policy_changes),
                   make_action(**action_changes), counters)
    assert decision.outcome == outcome
    assert decision.sampled is False


# --- sampling --------------------------------------------------------------------------

def test_sample_draw_is_the_documented_formula() -> None:
    for n in range(200):
        request_id = str(uuid.UUID(int=n * 7919))
        expected = int(hashlib.sha256(request_id.encode()).hexdigest()[:16], 16) / 16**16
        assert sample_draw(request_id) == expected
        assert 0.0 <= sample_draw(request_id) < 1.0


def test_sampling_is_deterministic_per_request() -> None:
    policy = make_policy(autonomy_level=2, review_sample_rate=0.5)
    for n in range(100):
        action = make_action(request_id=str(uuid.UUID(int=n)))
        first = decide(policy, action, Counters(), NOW).sampled
        assert all(decide(policy, action, Counters(), NOW).sampled is first for _ in range(3))
        assert first is (sample_draw(action.request_id) < 0.5)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9])
def test_sampled_share_matches_the_rate(rate: float) -> None:
    policy = make_policy(autonomy_level=2, review_sample_rate=rate)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"steward-{n}")) for n in range(10_000)]
    sampled = sum(decide(policy, make_action(request_id=i), Counters(), NOW).sampled
                  for i in ids)
    assert abs(sampled / len(ids) - rate) <= 0.02


def test_sampled_and_unsampled_request_ids_differ_in_the_decision() -> None:
    policy = make_policy(autonomy_level=2, review_sample_rate=0.2)
    hit, miss = request_id_for(0.2, sampled=True), request_id_for(0.2, sampled=False)
    assert run(policy, make_action(request_id=hit)) == Decision(ALLOW, (), True, None, ())
    assert run(policy, make_action(request_id=miss)) == Decision(ALLOW, (), False, None, ())


# --- ordering and combination ----------------------------------------------------------

def test_every_check_reports_in_order_and_block_wins() -> None:
    policy = make_policy(
        status="paused", pause_reason="Audit", autonomy_level=1,
        access={"crm": "draft"},
        guardrails=(rule("changes.stage", "changed", id=11, route_to_group="Managers"),
                    rule("amount", "gt", 5000, id=12, effect=BLOCK)),
        max_writes_per_hour=10)
    action = make_action(kind="execute", changes={"stage": "won"}, amount=9000,
                         confidence=0.1, sources=("web-analytics", "finance"))
    decision = run(policy, action, Counters(writes_last_hour=10, month_cost_usd=900.0))
    assert decision.outcome == BLOCK
    assert codes(decision) == [
        "paused", "access_exceeded", "source_unapproved", "source_stale", "guardrail",
        "guardrail", "confidence_block", "blast_radius", "budget", "autonomy"]
    assert decision.fired_guardrail_ids == (11, 12)
    assert decision.route_to_group is None
    assert decision.sampled is False


@pytest.mark.parametrize(("policy_changes", "action_changes", "counters", "outcome", "codes_"),
                         [
    ({}, {"confidence": 0.5, "sources": ("finance",)}, Counters(), REVIEW,
     ["source_stale", "confidence_review"]),
    ({}, {"confidence": 0.5, "system": "marketing", "kind": "read"}, Counters(), BLOCK,
     ["no_access", "confidence_review"]),
    ({}, {"confidence": 0.1}, Counters(month_cost_usd=600.0), BLOCK,
     ["confidence_block", "budget"]),
    ({"guardrails": (rule("amount", "gt", 0, route_to_group="Managers"),)},
     {"amount": 1, "confidence": 0.5}, Counters(writes_last_hour=100), REVIEW,
     ["guardrail", "confidence_review", "blast_radius"]),
    ({"autonomy_level": 1}, {"kind": "draft", "system": "helpdesk"},
     Counters(month_cost_usd=600.0), REVIEW, ["budget", "autonomy"]),
], ids=["two-reviews", "block-beats-review", "block-plus-review", "three-reviews",
        "budget-and-L1"])
def test_combinations(policy_changes: dict[str, Any], action_changes: dict[str, Any],
                      counters: Counters, outcome: str, codes_: list[str]) -> None:
    decision = run(make_policy(**policy_changes), make_action(**action_changes), counters)
    assert decision.outcome == outcome
    assert codes(decision) == codes_


def test_route_to_group_is_set_on_review_with_other_review_reasons() -> None:
    policy = make_policy(autonomy_level=1,
                         guardrails=(rule("amount", "gt", 0, route_to_group="Managers"),))
    decision = run(policy, make_action(amount=1, confidence=0.5))
    assert decision.outcome == REVIEW
    assert decision.route_to_group == "Managers"


# --- the demo agents, as policies ------------------------------------------------------

def test_demo_crm_hygiene_sends_a_stage_change_to_review() -> None:
    crm_hygiene = make_policy(
        slug="crm-hygiene", autonomy_level=2, review_sample_rate=0.2,
        confidence_review_below=0.8, confidence_block_below=0.4, max_writes_per_hour=200,
        monthly_cost_budget=250.0, access={"crm": "execute"},
        guardrails=(
            rule("changes.stage", "changed", id=1, name="Stage changes need review",
                 system="crm"),
            rule("changes.amount", "changed", id=2, name="Deal amounts are never edited",
                 system="crm", effect=BLOCK),
            rule("kind", "eq", "execute", id=4, name="Account merges need review",
                 system="crm", operation="merge_accounts"),
        ))
    action = make_action(kind="execute", operation="update_opportunity",
                         changes={"stage": "closed_won", "next_step": "kickoff"},
                         confidence=0.92, sources=("crm-accounts",))
    decision = decide(crm_hygiene, action, Counters(writes_last_hour=12, month_cost_usd=40.0),
                      NOW)
    assert decision == Decision(
        REVIEW,
        (Reason("guardrail", "Guardrail 'Stage changes need review': changes.stage changed → "
                             "review"),),
        sampled=False, route_to_group=None, fired_guardrail_ids=(1,))


def test_demo_refund_replies_sends_650_to_the_managers() -> None:
    refund_replies = make_policy(
        slug="refund-replies", status="pilot", autonomy_level=2, review_sample_rate=0.2,
        access={"helpdesk": "draft", "billing": "read"},
        guardrails=(
            rule("amount", "gt", 500, id=21, name="Refunds over 500 need a manager",
                 system="helpdesk", operation="refund_reply", route_to_group="Managers"),
            rule("amount", "gt", 5000, id=22, name="Refunds over 5000 are blocked",
                 effect=BLOCK),
            rule("changes.currency", "ne", "USD", id=23, name="Only USD refunds"),
        ))
    action = make_action(system="helpdesk", operation="refund_reply", kind="draft",
                         amount=650.0, currency="USD", changes={"currency": "USD"},
                         confidence=0.9)
    decision = decide(refund_replies, action, Counters(), NOW)
    assert decision.outcome == REVIEW
    assert decision.route_to_group == "Managers"
    assert decision.fired_guardrail_ids == (21,)
    assert decision.reasons == (Reason(
        "guardrail",
        "Guardrail 'Refunds over 500 need a manager': amount 650 > 500 → review by Managers"),)


def test_demo_paused_kpi_reporter_is_blocked() -> None:
    kpi_reporter = make_policy(slug="kpi-reporter", status="paused", autonomy_level=1,
                               pause_reason="Figures were wrong last week",
                               access={"knowledge-base": "draft"})
    action = make_action(system="knowledge-base", operation="write_commentary", kind="draft")
    decision = decide(kpi_reporter, action, Counters(), NOW)
    assert decision.outcome == BLOCK
    assert decision.reasons[0] == Reason(
        "paused", "Paused by its owners: Figures were wrong last week. No action is allowed "
                  "until it is resumed.")
    assert decision.sampled is False and decision.route_to_group is None


# --- purity ----------------------------------------------------------------------------

def test_engine_imports_no_django_and_no_io() -> None:
    tree = ast.parse(Path(policy_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "hashlib", "collections", "dataclasses", "datetime",
                        "typing"}


def test_decide_leaves_its_inputs_untouched() -> None:
    changes = {"stage": "won", "tags": ["a"]}
    guardrail_value = ["acme", "globex"]
    policy = make_policy(guardrails=(rule("target", "in", guardrail_value),
                                     rule("changes.stage", "changed")))
    action = make_action(changes=changes, target="acme", sources=("finance",))
    before = copy.deepcopy((policy, action))
    run(policy, action)
    assert changes == {"stage": "won", "tags": ["a"]}
    assert guardrail_value == ["acme", "globex"]
    assert (policy, action) == before
