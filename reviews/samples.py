"""After-the-fact review of sampled actions: *Looks right* or *Flag a problem*.

At L2 the gate allows low-risk `execute` actions and samples some of them (`sampled`) for a
reviewer to check afterwards. Each sampled item gets exactly one verdict: the item's row is
locked (`SELECT … FOR UPDATE`) while the verdict is checked and written, so of two reviewers
judging it at once one wins and the other is told who already checked it.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from portal import audit
from reviews.incidents import incident_report
from reviews.models import ActionRequest, Incident
from reviews.services import can_review

Verdict = ActionRequest.SampleVerdict


def _lock_unchecked_sample(action: ActionRequest) -> ActionRequest:
    """The item, locked until commit, if it was sampled and nobody has checked it yet."""
    action = ActionRequest.objects.select_for_update().get(pk=action.pk)
    if not action.sampled:
        raise ValidationError("This action was not sampled for review afterwards.")
    if action.sample_verdict:
        raise ValidationError(f"Already checked by {action.sample_checked_by or 'someone'} "
                              f"({action.get_sample_verdict_display()}).")
    return action


def _check(*, actor, action: ActionRequest, verdict: str) -> ActionRequest:
    if actor is None or not can_review(actor, action):
        raise PermissionDenied(
            f"Only members of {action.route_to_group.name} may check this item."
            if action.route_to_group_id else "You are not a reviewer of this agent.")
    locked = _lock_unchecked_sample(action)
    locked.sample_verdict, locked.sample_checked_by, locked.sample_checked_at = (
        verdict, actor, timezone.now())
    locked.save(update_fields=["sample_verdict", "sample_checked_by", "sample_checked_at"])
    return locked


@transaction.atomic
def sample_looks_right(*, actor, action: ActionRequest) -> ActionRequest:
    """A reviewer confirms a sampled action was right."""
    action = _check(actor=actor, action=action, verdict=Verdict.LOOKS_RIGHT)
    audit.record(actor=actor, verb="action.sample_looks_right", obj=action,
                 agent=action.agent, data={"request": str(action.public_id)})
    return action


@transaction.atomic
def sample_flag(*, actor, action: ActionRequest, category: str, severity: str,
                description: str) -> Incident:
    """A reviewer flags a sampled action: the verdict is `flagged` and an incident is opened
    (through `incident_report`, so its rules and the owners' e-mail apply). Both or neither."""
    action = _check(actor=actor, action=action, verdict=Verdict.FLAGGED)
    incident = incident_report(actor=actor, agent=action.agent, action_request=action,
                               category=category, severity=severity, description=description)
    audit.record(actor=actor, verb="action.sample_flagged", obj=action, agent=action.agent,
                 data={"request": str(action.public_id), "incident": incident.pk})
    return incident
