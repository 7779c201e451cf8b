"""Helpers of the alert tests: agents in pilot, action requests, weekly rollups."""

from datetime import date, datetime, timedelta

from django.utils import timezone

from agents.models import Agent
from metrics.models import Metric, Rollup
from metrics.selectors import WEEK, reporting_periods, shift
from reviews.models import ActionRequest
from tests.factories import SystemFactory, make_agent


def pilot_agent(**fields) -> Agent:
    """An agent in pilot (status written directly: the detectors only read it)."""
    agent = make_agent(**fields)
    Agent.objects.filter(pk=agent.pk).update(status=Agent.Status.PILOT)
    agent.refresh_from_db()
    return agent


def action(agent: Agent, **fields) -> ActionRequest:
    now = fields.pop("created_at", None) or timezone.now()
    fields = {"system": SystemFactory(slug="crm", name="CRM"), "operation": "update_deal",
              "kind": "execute", "summary": "Mark deal 4411 won", "decision": "allow",
              "status": "approved", "policy_version": 1, "proposal_sha256": "0" * 64,
              "created_at": now, **fields}
    return ActionRequest.objects.create(agent=agent, **fields)


def decided(agent: Agent, reviewer, *, at: datetime, overridden: bool = False,
            **fields) -> ActionRequest:
    """An item a person decided at `at` (rejected when `overridden`)."""
    return action(agent, created_at=at - timedelta(minutes=30), decision="review",
                  status="rejected" if overridden else "approved", reviewed_by=reviewer,
                  reviewed_at=at, **fields)


def weeks(today: date, n: int) -> list[date]:
    """The last `n` complete weeks before `today`, oldest first."""
    current, _ = reporting_periods(WEEK, today)
    return [shift(current, WEEK, -k) for k in range(n - 1, -1, -1)]


def weekly(agent: Agent, key: str, values: list[float], *, today: date | None = None) -> None:
    """Weekly rollups of `key`, the last value in the last complete week."""
    today = today or timezone.localdate()
    metric = Metric.objects.get(key=key)
    for start, value in zip(weeks(today, len(values)), values, strict=True):
        Rollup.objects.update_or_create(agent=agent, metric=metric, grain=WEEK,
                                        period_start=start,
                                        defaults={"value": value, "count": 1})
