"""The agent card: what an agent may do, in plain sentences, written from the gate's own policy.

Every sentence about access, guardrails, sources and approval is built from the
`PolicySnapshot` the gate judges by (agents.snapshots), never from the forms or the model, so
the card says what the gate enforces at that policy version. Source freshness is asked of
the engine itself (`policy.decide` on a probe that cites the source).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.policy import KINDS, Action, Counters, GuardrailRule, PolicySnapshot, decide

# What each kind of action means, for a reader who has never seen the gate.
KIND_PHRASES = {
    "read": "read and look things up",
    "draft": "draft work for a person to send",
    "recommend": "recommend actions",
    "execute": "act on its own (execute changes)",
}
FIELD_PHRASES = {
    "amount": "the amount",
    "confidence": "its confidence",
    "operation": "the operation",
    "target": "the target",
    "kind": "the kind of action",
}
OPERATOR_PHRASES = {
    "eq": "is", "ne": "is not", "gt": "is more than", "gte": "is at least",
    "lt": "is less than", "lte": "is at most", "in": "is one of", "contains": "contains",
}
AUTONOMY_SENTENCES = {
    1: "L1: it drafts and a person approves every action before it happens (looking things "
       "up excepted).",
    2: "L2: low-risk actions run on their own; a sample of what it executes is reviewed "
       "afterwards.",
    3: "L3: it acts alone inside the rules on this card.",
    4: "L4: it coordinates across systems alone; exceptions are monitored.",
}
STATUS_SENTENCES = {
    "proposed": "It is proposed: it may not act until its pilot starts.",
    "pilot": "It is in pilot.",
    "live": "It is live.",
    "paused": "It is paused: every action it proposes is blocked until it is resumed.",
    "retired": "It is retired: it may no longer act.",
}


@dataclass(frozen=True)
class AccessLine:
    system: str  # the system's name
    slug: str
    allowed: tuple[str, ...]  # kinds, least to most powerful
    sentence: str

    @property
    def kinds(self) -> list[tuple[str, bool]]:
        return [(kind, kind in self.allowed) for kind in KINDS]


@dataclass(frozen=True)
class GuardrailLine:
    name: str
    effect: str  # review or block, as the gate applies it
    sentence: str


@dataclass(frozen=True)
class SourceLine:
    name: str
    slug: str
    approved: bool
    fresh: bool
    sentence: str


@dataclass(frozen=True)
class Card:
    version: int
    status: str
    autonomy_level: int
    access: tuple[AccessLine, ...]
    guardrails: tuple[GuardrailLine, ...]
    sources: tuple[SourceLine, ...]
    approval: tuple[str, ...]  # when a person must approve, one sentence each


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return ", ".join(_show(item) for item in value)
    return str(value)


def _field(field: str) -> str:
    if field.startswith("changes."):
        return f"the {field.removeprefix('changes.')} field"
    return FIELD_PHRASES.get(field, field)


def access_sentence(system: str, kind: str) -> str:
    allowed = KINDS[:KINDS.index(kind) + 1] if kind in KINDS else ()
    denied = [k for k in KINDS if k not in allowed]
    said = ", ".join(KIND_PHRASES[k] for k in allowed) or "nothing"
    sentence = f"In {system} it may {said}"
    if denied:
        sentence += f"; it may not {' or '.join(KIND_PHRASES[k] for k in denied)}"
    return sentence + "."


def guardrail_sentence(rule: GuardrailRule, system_names: dict[str, str]) -> str:
    """One guardrail as the gate applies it, e.g. "Refunds over 500 need a manager: in
    Helpdesk, for refund_reply, when the amount is more than 500, a member of Managers
    must approve it first."""
    scope = []
    if rule.system:
        scope.append(f"in {system_names.get(rule.system, rule.system)}")
    if rule.operation:
        scope.append(f"for {rule.operation}")
    if rule.operator == "changed":
        condition = f"when it changes {_field(rule.field)}"
    else:
        operator = OPERATOR_PHRASES.get(rule.operator, rule.operator)
        condition = f"when {_field(rule.field)} {operator} {_show(rule.value)}"
    # The engine reviews only on "review"; any other effect blocks (it fails closed).
    if rule.effect == "review":
        then = (f"a member of {rule.route_to_group} must approve it first" if rule.route_to_group
                else "a person must approve it first")
    else:
        then = "it is blocked"
    return f"{rule.name}: {', '.join([*scope, condition])}, {then}."


def _source_line(policy: PolicySnapshot, slug: str, now: datetime) -> SourceLine:
    source = policy.sources[slug]
    probe = Action(request_id="card", system="", operation="", kind="read", sources=(slug,))
    codes = {reason.code for reason in decide(policy, probe, Counters(), now).reasons}
    approved = "source_unapproved" not in codes
    fresh = "source_stale" not in codes
    if not approved:
        sentence = f"{source.name}: not approved, so an action that cites it is blocked."
    elif not fresh:
        sentence = (f"{source.name}: approved but stale, so an action that cites it goes to a "
                    "person.")
    else:
        sentence = f"{source.name}: approved and fresh."
    return SourceLine(source.name, slug, approved, fresh, sentence)


def _approval(policy: PolicySnapshot) -> tuple[str, ...]:
    lines = [STATUS_SENTENCES.get(policy.status, f"Its status is {policy.status}."),
             AUTONOMY_SENTENCES.get(policy.autonomy_level,
                                    "Its autonomy level is unknown: a person approves every "
                                    "action.")]
    if policy.autonomy_level == 2:
        lines.append(f"{policy.review_sample_rate:.0%} of the actions it executes are picked "
                     "for a person to review afterwards.")
    lines.append(f"When it is less than {policy.confidence_review_below:g} sure of an action, "
                 f"a person reviews it; under {policy.confidence_block_below:g} the action is "
                 "blocked.")
    if policy.max_writes_per_hour is not None:
        lines.append(f"Blast radius: after {policy.max_writes_per_hour} executed actions in an "
                     "hour, the next ones wait for a person.")
    else:
        lines.append("Blast radius: no hourly limit on executed actions is set.")
    if policy.monthly_cost_budget is not None:
        lines.append(f"Budget: once ${policy.monthly_cost_budget:,.2f} is spent in a month, "
                     "every action waits for a person.")
    else:
        lines.append("Budget: no monthly cost budget is set.")
    lines.append("Citing a source that is not approved blocks an action; a stale source "
                 "sends it to a person.")
    lines.append(f"A reviewer has {policy.review_sla_hours} hours to decide; then it is "
                 "escalated.")
    return tuple(lines)


def build_card(policy: PolicySnapshot, system_names: dict[str, str], now: datetime) -> Card:
    """The card for one policy version. `system_names`: slug → name, for the words only."""
    access = tuple(
        AccessLine(system_names.get(slug, slug), slug,
                   KINDS[:KINDS.index(kind) + 1] if kind in KINDS else (),
                   access_sentence(system_names.get(slug, slug), kind))
        for slug, kind in sorted(policy.access.items(),
                                 key=lambda item: system_names.get(item[0], item[0])))
    guardrails = tuple(
        GuardrailLine(rule.name, "review" if rule.effect == "review" else "block",
                      guardrail_sentence(rule, system_names))
        for rule in policy.guardrails)
    sources = tuple(_source_line(policy, slug, now)
                    for slug in sorted(policy.sources, key=lambda s: policy.sources[s].name))
    return Card(policy.version, policy.status, policy.autonomy_level, access, guardrails,
                sources, _approval(policy))


def systems_named(policy: PolicySnapshot) -> set[str]:
    """The system slugs a card of this policy names (to look their names up in one query)."""
    return set(policy.access) | {rule.system for rule in policy.guardrails if rule.system}
