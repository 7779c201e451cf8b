"""Every write to an action request after the gate stored it: decisions and outcomes.

Approvals take the same share lock on the agent's row as the gate (reviews.gate), so once a
pause has committed no approval of that agent's items can succeed.
"""

from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from portal import audit
from portal.permissions import REVIEW_AGENT, has_agent_perm
from reviews.gate import lock_agent_for_share
from reviews.models import ActionRequest

Status = ActionRequest.Status

# Which outcome may follow which status.
OUTCOME_FROM = {
    Status.EXECUTED: {Status.APPROVED},
    Status.FAILED: {Status.APPROVED},
    Status.ROLLED_BACK: {Status.APPROVED, Status.EXECUTED},
}


class ActionStateError(Exception):
    """The request is not in a state that allows this (answered with 409 by the API)."""


def can_review(user, action: ActionRequest) -> bool:
    """Reviewers of the agent may decide; an item routed to a group needs a member of it."""
    if action.route_to_group_id is not None:
        return user.is_active and (
            user.is_superuser or user.groups.filter(pk=action.route_to_group_id).exists())
    return has_agent_perm(user, REVIEW_AGENT, action.agent)


def _lock_pending(actor, action: ActionRequest) -> tuple[ActionRequest, Agent]:
    if not can_review(actor, action):
        raise PermissionDenied(
            f"Only members of {action.route_to_group.name} may decide this item."
            if action.route_to_group_id else "You are not a reviewer of this agent.")
    lock_agent_for_share(action.agent_id)
    agent = Agent.objects.get(pk=action.agent_id)
    action = ActionRequest.objects.select_for_update().get(pk=action.pk)
    if action.status != Status.PENDING:
        raise ValidationError(f"This request is already {action.get_status_display()}.")
    return action, agent


@transaction.atomic
def action_approve(*, actor, action: ActionRequest, note: str = "") -> ActionRequest:
    """Approve a pending request. Refused while its agent is paused or retired."""
    action, agent = _lock_pending(actor, action)
    if agent.status == Agent.Status.PAUSED:
        raise ValidationError(f"{agent.name} is paused ({agent.pause_reason}): nothing of it "
                              "can be approved until it is resumed.")
    if agent.status == Agent.Status.RETIRED:
        raise ValidationError(f"{agent.name} is retired: its requests can only be rejected.")
    action.status, action.reviewed_by, action.reviewed_at = (
        Status.APPROVED, actor, timezone.now())
    action.review_note = note.strip()
    action.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    audit.record(actor=actor, verb="action.approved", obj=action, agent=agent,
                 data={"request": str(action.public_id), "note": action.review_note,
                       "proposal_sha256": action.proposal_sha256})
    return action


@transaction.atomic
def action_reject(*, actor, action: ActionRequest, note: str) -> ActionRequest:
    """Reject a pending request; the reason is required and the agent reads it."""
    if not note or not note.strip():
        raise ValidationError({"note": "Say why you reject it: the agent's owners read this."})
    action, agent = _lock_pending(actor, action)
    action.status, action.reviewed_by, action.reviewed_at = (
        Status.REJECTED, actor, timezone.now())
    action.review_note = note.strip()
    action.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
    audit.record(actor=actor, verb="action.rejected", obj=action, agent=agent,
                 data={"request": str(action.public_id), "note": action.review_note})
    return action


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
