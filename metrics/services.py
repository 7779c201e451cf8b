"""Writes of the scorecard pages: targets and the periodic scorecard review.

Each one checks the actor's right, validates, changes, and records an audit event, in one
transaction. Bad input raises ValidationError naming the field; nothing is changed then.
"""

import math
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from metrics import selectors
from metrics.models import Metric, ScorecardReview, Target
from portal import audit
from portal.permissions import CHANGE_AGENT, has_agent_perm, require_agent_perm
from portal.roles import ADMINS, REVOPS

NOTES_MAX_CHARS = 5000
# A decision to change course must say what changes; keeping or expanding may go unexplained.
NOTES_REQUIRED_FOR = {ScorecardReview.Decision.REVISE: "Say what must be revised.",
                      ScorecardReview.Decision.STOP: "Say why the agent should stop."}


def _number(value, *, field: str, metric: Metric) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError({field: "Enter a number, e.g. 95 or 1.5."}) from None
    if not math.isfinite(number):
        raise ValidationError({field: "Enter a finite number."})
    too_low = metric.min_value is not None and number < metric.min_value
    too_high = metric.max_value is not None and number > metric.max_value
    if too_low or too_high:
        raise ValidationError({field: f"{metric.name} is {metric.range_text()}; "
                                      f"{number:g} is outside that."})
    return number


def target_set(*, actor, agent: Agent, metric: Metric, target, human_baseline) -> Target | None:
    """Set (or clear, with both empty) what the owners aim for on one metric and what a person
    doing the same work achieves. Needs `change_agent` on the agent."""
    require_agent_perm(actor, CHANGE_AGENT, agent)
    if agent.status == Agent.Status.RETIRED:
        raise PermissionDenied("A retired agent cannot be changed.")
    goal = _number(target, field="target", metric=metric)
    baseline = _number(human_baseline, field="human_baseline", metric=metric)
    with transaction.atomic():
        existing = (Target.objects.select_for_update()
                    .filter(agent=agent, metric=metric).first())
        before = {"target": existing.target if existing else None,
                  "human_baseline": existing.human_baseline if existing else None}
        after = {"target": goal, "human_baseline": baseline}
        if before == after:
            return existing
        if goal is None and baseline is None:
            existing.delete()
            saved = None
        else:
            saved, _created = Target.objects.update_or_create(
                agent=agent, metric=metric,
                defaults={**after, "updated_by": actor})
        audit.record(actor=actor, verb="metric.target_set", obj=agent, agent=agent,
                     data={"metric": metric.key, "changes": audit.diff(before, after)})
    return saved


def may_review(user, agent: Agent, *, held: set[str] | None = None) -> bool:
    """Owners (change_agent on the agent) and the RevOps and Admins groups record reviews.
    `held`: the user's permissions on the agent, when the page has them already."""
    if user is None or not user.is_active:
        return False
    can_change = (CHANGE_AGENT in held if held is not None
                  else has_agent_perm(user, CHANGE_AGENT, agent))
    if can_change or user.is_superuser:
        return True
    return user.groups.filter(name__in=[REVOPS, ADMINS]).exists()


def scorecard_review_record(*, actor, agent: Agent, grain: str, period_start: date,
                            decision: str, notes: str = "") -> ScorecardReview:
    """Record the periodic decision on the agent: expand, keep, revise or stop."""
    if actor is not None and not may_review(actor, agent):
        raise PermissionDenied("Only the agent's owners, RevOps and admins record scorecard "
                               "reviews.")
    notes = (notes or "").strip()
    errors = {}
    if decision not in ScorecardReview.Decision.values:
        errors["decision"] = "Choose expand, keep, revise or stop."
    elif decision in NOTES_REQUIRED_FOR and not notes:
        errors["notes"] = NOTES_REQUIRED_FOR[decision]
    if len(notes) > NOTES_MAX_CHARS:
        errors["notes"] = f"Keep the notes under {NOTES_MAX_CHARS} characters."
    if grain not in selectors.GRAINS:
        errors["grain"] = "The period is a week or a month."
    elif not isinstance(period_start, date) or not selectors.is_period_start(period_start,
                                                                              grain):
        errors["period_start"] = ("The period starts on a Monday (week) or on the 1st "
                                  "(month).")
    elif period_start > timezone.localdate():
        errors["period_start"] = "That period has not started yet."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        review = ScorecardReview.objects.create(
            agent=agent, grain=grain, period_start=period_start, decision=decision,
            notes=notes, reviewer=actor)
        audit.record(actor=actor, verb="scorecard.reviewed", obj=review, agent=agent,
                     data={"decision": decision, "grain": grain,
                           "period_start": period_start.isoformat(), "notes": notes})
    return review
