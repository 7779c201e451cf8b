"""Every write to an action request after the gate stored it: decisions, claims, the review
SLA and outcomes.

Locks, always taken in this order (a lock protects only if every writer takes it the same way):

1. decisions (approve, edit-and-approve, reject) first read the agent's row `FOR SHARE`, as
   the gate does (reviews.gate), so once a pause has committed no approval of that agent's
   items can succeed;
2. then the request's row `FOR UPDATE`: two reviewers deciding the same item at once
   serialise on it, and the second one finds the item decided ("Already approved by X").

Claims, expiry, escalation and callback bookkeeping lock only the request's row (claims and
the beat tasks with `SKIP LOCKED`: they never wait for a reviewer). Every decision of an agent
with a callback URL sends it the result once the transaction commits (reviews.callbacks).
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents import snapshots
from agents.models import Agent
from agents.policy import BLOCK, REVIEW, Action, Counters, PolicySnapshot, decide
from agents.policy import Decision as PolicyDecision
from portal import audit
from portal.permissions import REVIEW_AGENT, has_agent_perm
from portal.roles import ADMINS
from portal.text import contains_nul
from reviews.gate import PROPOSAL_FIELDS, lock_agent_for_share, proposal_digest
from reviews.models import ActionRequest

Status = ActionRequest.Status
CallbackStatus = ActionRequest.CallbackStatus

# Which outcome may follow which status.
OUTCOME_FROM = {
    Status.EXECUTED: {Status.APPROVED},
    Status.FAILED: {Status.APPROVED},
    Status.ROLLED_BACK: {Status.APPROVED, Status.EXECUTED},
}
# Reason codes of the policy engine that always block (guardrails block by their effect).
BLOCKING_CODES = frozenset({"paused", "retired", "not_started", "no_access", "access_exceeded",
                            "source_not_declared", "source_unapproved", "confidence_block"})
CONTENT_MAX_CHARS = 100_000  # as the API accepts from agents

# A test may set this to a callable run after a decision read the pending item and before it
# writes, to prove that the row lock decides races (tests/reviews/test_decisions.py).
after_pending_read = None


class ActionStateError(Exception):
    """The request is not in a state that allows this (answered with 409 by the API)."""


def can_review(user, action: ActionRequest) -> bool:
    """Reviewers of the agent may decide; an item routed to a group needs a member of it."""
    if action.route_to_group_id is not None:
        return user.is_active and (
            user.is_superuser or user.groups.filter(pk=action.route_to_group_id).exists())
    return has_agent_perm(user, REVIEW_AGENT, action.agent)


def _require_reviewer(actor, action: ActionRequest) -> None:
    if actor is None or not can_review(actor, action):
        raise PermissionDenied(
            f"Only members of {action.route_to_group.name} may decide this item."
            if action.route_to_group_id else "You are not a reviewer of this agent.")


def _claim_lapses_after() -> timedelta:
    return timedelta(minutes=settings.STEWARD_REVIEW_CLAIM_MINUTES)


def _held_by_another(action: ActionRequest, actor, now: datetime) -> bool:
    """Someone else claimed the item and the claim has not lapsed."""
    return (action.claimed_by_id is not None and action.claimed_by_id != actor.pk
            and action.claimed_at is not None
            and action.claimed_at > now - _claim_lapses_after())


def _claimed_message(action: ActionRequest, now: datetime) -> str:
    minutes = int((now - action.claimed_at).total_seconds() // 60)
    return f"Claimed by {action.claimed_by} {minutes} minute{'' if minutes == 1 else 's'} ago."


def decided_message(action: ActionRequest) -> str:
    """Why a request no longer waits for a decision, naming who decided it."""
    by = action.reviewed_by
    if action.status == Status.REJECTED:
        return f"Already rejected by {by}." if by else "Already rejected."
    if action.status in (Status.APPROVED, *ActionRequest.OUTCOMES):
        if by is None:
            return "The gate allowed this action: it does not wait for a review."
        edited = " (with edits)" if (action.edited_changes is not None
                                     or action.edited_content is not None) else ""
        return f"Already approved by {by}{edited}."
    if action.status == Status.EXPIRED:
        return "This request expired: nobody decided it in time, and its agent was told."
    return f"This request is {action.get_status_display()}: there is nothing to decide."


def _locked_request(pk: int) -> ActionRequest:
    """The request's row, locked until commit (a test replaces this to prove the lock matters)."""
    return ActionRequest.objects.select_for_update().get(pk=pk)


def _lock_pending(actor, action: ActionRequest) -> tuple[ActionRequest, Agent]:
    """Lock the agent (share) and the item (update) in that order; the item must be pending
    and not claimed by someone else."""
    _require_reviewer(actor, action)
    lock_agent_for_share(action.agent_id)
    agent = Agent.objects.get(pk=action.agent_id)
    action = _locked_request(action.pk)
    if after_pending_read is not None:
        after_pending_read()
    if action.status != Status.PENDING:
        raise ValidationError(decided_message(action))
    now = timezone.now()
    if _held_by_another(action, actor, now):
        raise ValidationError(
            f"{_claimed_message(action, now)} Only they may decide it until the claim lapses "
            f"({settings.STEWARD_REVIEW_CLAIM_MINUTES} minutes after it was taken).")
    return action, agent


def _refuse_unless_running(agent: Agent) -> None:
    if agent.status == Agent.Status.PAUSED:
        raise ValidationError(f"{agent.name} is paused ({agent.pause_reason}): nothing of it "
                              "can be approved until it is resumed.")
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError(f"{agent.name} is retired: its requests can only be rejected.")


def _callback_fields(action: ActionRequest, agent: Agent) -> list[str]:
    """Mark the decision as owed to the agent's callback URL, if it has one."""
    if not agent.callback_url:
        return []
    action.callback_status, action.callback_attempts, action.callback_error = (
        CallbackStatus.PENDING, 0, "")
    return ["callback_status", "callback_attempts", "callback_error"]


def _send_callback_on_commit(action: ActionRequest) -> None:
    if action.callback_status == CallbackStatus.PENDING:
        from reviews.tasks import callback_send  # the tasks module imports this one

        callback_send.delay_on_commit(action.pk)


def _decide(action: ActionRequest, agent: Agent, *, actor, status: str, note: str,
            extra_fields: tuple[str, ...] = ()) -> None:
    action.status, action.reviewed_by, action.reviewed_at = status, actor, timezone.now()
    action.review_note = note.strip()
    action.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note",
                               *extra_fields, *_callback_fields(action, agent)])
    _send_callback_on_commit(action)


@transaction.atomic
def action_approve(*, actor, action: ActionRequest, note: str = "") -> ActionRequest:
    """Approve a pending request as proposed. Refused while its agent is paused or retired.

    The approval authorises this one request, bound to its proposal's SHA-256 (recorded in
    the audit event): the agent may report it `executed` once, and proposing the same thing
    again makes a new request that the gate judges anew.
    """
    action, agent = _lock_pending(actor, action)
    _refuse_unless_running(agent)
    _decide(action, agent, actor=actor, status=Status.APPROVED, note=note)
    audit.record(actor=actor, verb="action.approved", obj=action, agent=agent,
                 data={"request": str(action.public_id), "note": action.review_note,
                       "proposal_sha256": action.proposal_sha256})
    return action


def _check_edit_input(changes, content) -> None:
    errors = {}
    if changes is not None and (not isinstance(changes, dict)
                                or not all(isinstance(key, str) for key in changes)):
        errors["changes"] = "The changes must be a JSON object: {field: new value}."
    elif contains_nul(changes):
        errors["changes"] = "The changes must not contain NUL (\\u0000) characters."
    if content is not None and not isinstance(content, str):
        errors["content"] = "The content must be text."
    elif content is not None and len(content) > CONTENT_MAX_CHARS:
        errors["content"] = f"Keep the content under {CONTENT_MAX_CHARS:,} characters."
    elif contains_nul(content):
        errors["content"] = "The content must not contain NUL (\\u0000) characters."
    if errors:
        raise ValidationError(errors)


def _edited_proposal(action: ActionRequest, changes: dict, content: str) -> dict:
    """The proposal as the agent will now carry it out: its own fields with the edit."""
    proposal = {name: getattr(action, name) for name in PROPOSAL_FIELDS
                if name not in ("system", "amount")}
    proposal.update(system=action.system.slug, changes=changes, content=content,
                    amount=float(action.amount) if action.amount is not None else None)
    return proposal


def _blocking_reasons(policy: PolicySnapshot, decision: PolicyDecision) -> list[str]:
    """The messages of the reasons that block (every reason, should none be recognised)."""
    effects = {rule.id: rule.effect for rule in policy.guardrails}
    fired = iter(decision.fired_guardrail_ids)  # in the order the guardrail reasons appear
    blocking = []
    for reason in decision.reasons:
        if reason.code == "guardrail":
            if effects.get(next(fired, None)) != REVIEW:
                blocking.append(reason.message)
        elif reason.code in BLOCKING_CODES:
            blocking.append(reason.message)
    return blocking or [reason.message for reason in decision.reasons]


def _judge_edit(actor, action: ActionRequest, agent: Agent, proposal: dict) -> PolicyDecision:
    """Run the edited proposal through the policy engine; refuse what it would block, and a
    review routed to a group the reviewer is not in (the edit must not bypass the routing)."""
    policy = snapshots.policy_snapshot(agent.pk, agent.policy_version)
    decision = decide(policy, Action(
        request_id=str(action.public_id), system=proposal["system"],
        operation=action.operation, kind=action.kind, target=action.target,
        summary=action.summary, changes=proposal["changes"], content=proposal["content"],
        amount=proposal["amount"], currency=action.currency, confidence=action.confidence,
        sources=tuple(action.sources or ()),
    ), Counters(), timezone.now())  # counters as zero: a person approves this one action
    if decision.outcome == BLOCK:
        raise ValidationError(
            "The edited proposal would be blocked: " + "; ".join(
                _blocking_reasons(policy, decision)) + ". Change the edit, or reject it.")
    group = decision.route_to_group
    if group and not (actor.is_superuser or actor.groups.filter(name=group).exists()):
        raise ValidationError(f"With this edit the action needs a review by {group}: only "
                              "its members may approve it.")
    return decision


def _json_diff(before: dict, after: dict) -> dict:
    """{key: [old, new]} for every key added, removed or changed."""
    return {key: [before.get(key), after.get(key)] for key in sorted({*before, *after})
            if before.get(key, KeyError) != after.get(key, KeyError)}


@transaction.atomic
def action_edit_approve(*, actor, action: ActionRequest, changes: dict | None = None,
                        content: str | None = None, note: str = "") -> ActionRequest:
    """Approve with the reviewer's edit: the agent receives the edited changes/content.

    An edit is an override (`action.edited_approved`, with the diff), and the edited proposal
    passes the policy engine again under the agent's current policy: an edit that would be
    blocked (a `block` guardrail, an unapproved source…) is refused with the reasons, and so
    is one that would need a group the reviewer is not in. `None` leaves a part as proposed.
    """
    _require_reviewer(actor, action)
    _check_edit_input(changes, content)
    action, agent = _lock_pending(actor, action)
    _refuse_unless_running(agent)
    edited_changes = changes if changes is not None and changes != action.changes else None
    edited_content = content if content is not None and content != action.content else None
    if edited_changes is None and edited_content is None:
        raise ValidationError("Nothing was edited: change the proposed changes or the "
                              "content, or approve it as proposed.")
    final_changes = action.changes if edited_changes is None else edited_changes
    final_content = action.content if edited_content is None else edited_content
    proposal = _edited_proposal(action, final_changes, final_content)
    decision = _judge_edit(actor, action, agent, proposal)
    action.edited_changes, action.edited_content = edited_changes, edited_content
    _decide(action, agent, actor=actor, status=Status.APPROVED, note=note,
            extra_fields=("edited_changes", "edited_content"))
    edit = {}
    if edited_changes is not None:
        edit["changes"] = _json_diff(action.changes, edited_changes)
    if edited_content is not None:
        edit["content"] = [action.content, edited_content]
    audit.record(actor=actor, verb="action.edited_approved", obj=action, agent=agent,
                 data={"request": str(action.public_id), "note": action.review_note,
                       "proposal_sha256": action.proposal_sha256,
                       "approved_sha256": proposal_digest(proposal), "edit": edit,
                       "rejudged": {"decision": decision.outcome,
                                    "reasons": [r.as_dict() for r in decision.reasons],
                                    "policy_version": agent.policy_version}})
    return action


@transaction.atomic
def action_reject(*, actor, action: ActionRequest, note: str) -> ActionRequest:
    """Reject a pending request; the reason is required and the agent reads it."""
    if not note or not note.strip():
        raise ValidationError({"note": "Say why you reject it: the agent's owners read this."})
    action, agent = _lock_pending(actor, action)
    _decide(action, agent, actor=actor, status=Status.REJECTED, note=note)
    audit.record(actor=actor, verb="action.rejected", obj=action, agent=agent,
                 data={"request": str(action.public_id), "note": action.review_note,
                       "proposal_sha256": action.proposal_sha256})
    return action


# --- claims ------------------------------------------------------------------------------------

@transaction.atomic
def action_claim(*, actor, action: ActionRequest) -> ActionRequest:
    """Take a pending item so other reviewers leave it alone; the claim lapses after
    STEWARD_REVIEW_CLAIM_MINUTES. Claiming again refreshes one's own claim.

    `SKIP LOCKED` on PostgreSQL: a claim never waits behind another reviewer's claim or
    decision of the same item; it is refused at once instead.
    """
    _require_reviewer(actor, action)
    locked = (ActionRequest.objects.select_for_update(skip_locked=True)
              .filter(pk=action.pk).first())
    if after_pending_read is not None:
        after_pending_read()
    now = timezone.now()
    if locked is None:  # another reviewer is claiming or deciding it right now
        current = ActionRequest.objects.select_related("claimed_by").get(pk=action.pk)
        if _held_by_another(current, actor, now):
            raise ValidationError(_claimed_message(current, now))
        raise ValidationError("Another reviewer is taking or deciding this item right now.")
    if locked.status != Status.PENDING:
        raise ValidationError(decided_message(locked))
    if _held_by_another(locked, actor, now):
        raise ValidationError(_claimed_message(locked, now))
    renewed = locked.claimed_by_id == actor.pk
    locked.claimed_by, locked.claimed_at = actor, now
    locked.save(update_fields=["claimed_by", "claimed_at"])
    if not renewed:
        audit.record(actor=actor, verb="action.claimed", obj=locked, agent=locked.agent,
                     data={"request": str(locked.public_id),
                           "lapses_at": now + _claim_lapses_after()})
    return locked


@transaction.atomic
def action_unclaim(*, actor, action: ActionRequest) -> ActionRequest:
    """Give a claimed item back. Only its claimer may, until the claim lapses."""
    _require_reviewer(actor, action)
    locked = _locked_request(action.pk)
    if locked.claimed_by_id is None:
        return locked
    now = timezone.now()
    if _held_by_another(locked, actor, now):
        raise ValidationError(f"{_claimed_message(locked, now)} Only they may give it back "
                              "before the claim lapses.")
    claimed_by = locked.claimed_by
    locked.claimed_by, locked.claimed_at = None, None
    locked.save(update_fields=["claimed_by", "claimed_at"])
    audit.record(actor=actor, verb="action.unclaimed", obj=locked, agent=locked.agent,
                 data={"request": str(locked.public_id),
                       "claimed_by": claimed_by.get_username()})
    return locked


@transaction.atomic
def action_outcome_report(*, agent: Agent, action: ActionRequest, outcome: str,
                          detail: str = "") -> ActionRequest:
    """The agent reports what happened after an approval; recorded and audited."""
    action = ActionRequest.objects.select_for_update().get(pk=action.pk)
    allowed_from = OUTCOME_FROM[outcome]
    if action.status not in allowed_from:
        raise ActionStateError(
            f"Cannot report '{outcome}' for a request that is {action.status}: only after "
            f"{' or '.join(sorted(allowed_from))}.")
    previous = action.status
    action.status, action.outcome_detail, action.outcome_at = outcome, detail, timezone.now()
    action.save(update_fields=["status", "outcome_detail", "outcome_at"])
    audit.record(actor=agent, verb=f"action.{outcome}", obj=action, agent=agent,
                 data={"request": str(action.public_id), "from": previous, "detail": detail})
    return action


BUDGET_WARNING_SHARE = Decimal("0.8")


def budget_warnings_send(*, now=None) -> list[str]:
    """Tell the owners of each agent that has used 80% of its monthly budget, once a month.

    Run by beat (not by the gate: a gate call enqueues nothing). Returns the agents' slugs.
    """
    from django.core.mail import send_mail
    from django.db.models import Sum

    from portal.models import AuditEvent

    now = now or timezone.now()
    month = now.strftime("%Y-%m")
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    warned = []
    agents = (Agent.objects.filter(monthly_cost_budget__gt=0)
              .exclude(status=Agent.Status.RETIRED)
              .select_related("business_owner", "process_owner", "technical_owner"))
    spend = dict(ActionRequest.objects.filter(agent__in=agents, created_at__gte=start)
                 .values_list("agent").annotate(total=Sum("cost_usd")).order_by())
    for agent in agents:
        spent = spend.get(agent.pk) or 0
        if spent < agent.monthly_cost_budget * BUDGET_WARNING_SHARE:
            continue
        if AuditEvent.objects.filter(verb="agent.budget_warning", agent=agent,
                                     data__month=month).exists():
            continue
        share = spent / agent.monthly_cost_budget
        recipients = sorted({u.email for u in agent.owners.values() if u and u.email})
        with transaction.atomic():
            audit.record(actor=None, verb="agent.budget_warning", obj=agent,
                         data={"month": month, "spent_usd": str(round(spent, 2)),
                               "budget_usd": str(agent.monthly_cost_budget),
                               "notified": recipients})
        if recipients:
            send_mail(
                subject=f"[Steward] {agent.name} has used {share:.0%} of its monthly budget",
                message=(f"{agent.name} has spent ${spent:.2f} of its ${agent.monthly_cost_budget}"
                         f" budget for {month}. At 100% its actions go to review (reason "
                         "'budget').\n\nYou receive this as one of its owners."),
                from_email=None, recipient_list=recipients, fail_silently=False)
        warned.append(agent.slug)
    return warned


# --- the review SLA (beat: review-sla) ----------------------------------------------------------

SLA_BATCH = 200  # items locked and written per transaction


def review_sla_enforce(*, now: datetime | None = None) -> dict[str, int]:
    """Expire what waited too long, then escalate what is overdue. Idempotent: each item is
    expired once and escalated once, and items a reviewer is deciding right now are skipped
    (`SKIP LOCKED`) until the next run."""
    now = now or timezone.now()
    return {"expired": actions_expire(now=now), "escalated": actions_escalate(now=now)}


def actions_expire(*, now: datetime) -> int:
    """Pending items proposed more than STEWARD_REVIEW_EXPIRE_HOURS ago become `expired`: the
    agent stops waiting (it sees `expired` when it polls, and through its callback)."""
    hours = settings.STEWARD_REVIEW_EXPIRE_HOURS
    cutoff = now - timedelta(hours=hours)
    expired = 0
    while True:
        with transaction.atomic():
            items = list(ActionRequest.objects.select_for_update(skip_locked=True)
                         .filter(status=Status.PENDING, created_at__lt=cutoff)
                         .order_by("id")[:SLA_BATCH])
            if not items:
                return expired
            agents = Agent.objects.in_bulk({item.agent_id for item in items})
            for item in items:
                agent = agents[item.agent_id]
                item.status, item.reviewed_at = Status.EXPIRED, now
                item.review_note = (f"Expired: nobody decided it within {hours} hours. Propose "
                                    "it again if it is still needed.")
                item.save(update_fields=["status", "reviewed_at", "review_note",
                                         *_callback_fields(item, agent)])
                audit.record(actor=None, verb="action.expired", obj=item, agent=agent,
                             data={"request": str(item.public_id), "after_hours": hours,
                                   "due_at": item.due_at})
                _send_callback_on_commit(item)
            expired += len(items)


def _escalation_recipients(agent: Agent, admins: list[str]) -> list[str]:
    owner = agent.process_owner
    own = [owner.email] if owner is not None and owner.is_active and owner.email else []
    return sorted({*own, *admins})


def _escalation_mail(agent: Agent, items: list[ActionRequest], now: datetime) -> tuple[str, str]:
    from reviews.mail import absolute_url

    count = len(items)
    noun = "item waits" if count == 1 else "items wait"
    lines = [f"{count} review {noun} past due for {agent.name}:", ""]
    for item in items:
        late = _minutes_or_hours(item.due_at, now)
        what = item.summary or " ".join(filter(None, [item.operation, item.target]))
        lines.append(f"- {what[:120]} (due {late} ago)\n  "
                     f"{absolute_url(reverse('reviews:item', args=[item.public_id]))}")
    lines += ["", f"Unless someone decides them, they expire "
              f"{settings.STEWARD_REVIEW_EXPIRE_HOURS} hours after they were proposed and the "
              "agent stops waiting.", "",
              "You receive this as the agent's process owner or as a member of Admins."]
    subject = f"[Steward] {count} review {noun} past due for {agent.name}"
    return subject, "\n".join(lines)


def _minutes_or_hours(then: datetime, now: datetime) -> str:
    minutes = max(0, int((now - then).total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    return f"{minutes // 60} hours"


def actions_escalate(*, now: datetime) -> int:
    """Pending items past their due time are escalated once (`escalated_at`): an e-mail per
    agent to its process owner and the members of Admins, and an audit event per item.

    The e-mail is sent inside the transaction that marks the items: should the mail server
    fail, nothing is marked and the next run tries again (at least once, never silently lost).
    """
    from django.core.mail import send_mail

    admins = list(get_user_model().objects
                  .filter(groups__name=ADMINS, is_active=True).exclude(email="")
                  .values_list("email", flat=True))
    escalated = 0
    while True:
        with transaction.atomic():
            items = list(ActionRequest.objects.select_for_update(skip_locked=True)
                         .filter(status=Status.PENDING, due_at__lt=now,
                                 escalated_at__isnull=True)
                         .order_by("due_at", "id")[:SLA_BATCH])
            if not items:
                return escalated
            agents = Agent.objects.select_related("process_owner").in_bulk(
                {item.agent_id for item in items})
            by_agent: dict[int, list[ActionRequest]] = {}
            for item in items:
                by_agent.setdefault(item.agent_id, []).append(item)
            ActionRequest.objects.filter(pk__in=[item.pk for item in items]).update(
                escalated_at=now)
            for agent_id, agent_items in by_agent.items():
                agent = agents[agent_id]
                recipients = _escalation_recipients(agent, admins)
                for item in agent_items:
                    audit.record(actor=None, verb="action.escalated", obj=item, agent=agent,
                                 data={"request": str(item.public_id), "due_at": item.due_at,
                                       "notified": recipients})
                if recipients:
                    subject, message = _escalation_mail(agent, agent_items, now)
                    send_mail(subject=subject, message=message, from_email=None,
                              recipient_list=recipients, fail_silently=False)
            escalated += len(items)
