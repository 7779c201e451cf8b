"""Each warning-sign detector fires on its sign and stays quiet without it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from agents import services
from agents.models import Agent, AutonomyChange
from metrics import detectors
from metrics.detectors import base, limits, people, registry, trends
from metrics.models import Alert, ScorecardReview, Target
from portal.models import AuditEvent
from reviews.models import Incident
from tests.factories import DataSourceFactory, UserFactory
from tests.metrics.alert_helpers import action, decided, pilot_agent, weekly


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def agent(db):
    return pilot_agent(slug="replies", name="Replies", autonomy_level=2)


def kinds(findings) -> list[tuple[str, str]]:
    return [(f.kind, f.agent.slug if f.agent else f.subject) for f in findings]


def test_settings_hold_every_threshold_with_the_documented_defaults():
    assert settings.STEWARD_ALERTS == base.DEFAULTS


def test_every_kind_has_a_detector():
    assert set(detectors.DETECTORS) == set(Alert.Kind.values)


# --- speed up, quality down --------------------------------------------------------------------

def test_speed_quality_fires_when_faster_and_less_accurate(agent, now):
    weekly(agent, "cycle_time", [10, 9, 8, 6])
    weekly(agent, "accuracy", [95, 93, 90, 85])
    [finding] = trends.speed_quality(now=now)
    assert (finding.kind, finding.agent, finding.action) == ("speed_quality", agent,
                                                             "lower_autonomy")
    assert finding.evidence["speed"]["values"] == [10, 9, 8, 6]
    assert finding.evidence["quality"][0]["metric"] == "accuracy"


@pytest.mark.parametrize("cycle, accuracy", [
    ([10, 9, 8, 6], [95, 95, 96, 96]),   # faster, quality holds
    ([6, 8, 9, 10], [95, 93, 90, 85]),   # slower and worse: another problem
    ([10, 10, 10, 9.8], [95, 93, 90, 85]),  # speed moved under the threshold
])
def test_speed_quality_quiet_otherwise(agent, now, cycle, accuracy):
    weekly(agent, "cycle_time", cycle)
    weekly(agent, "accuracy", accuracy)
    assert trends.speed_quality(now=now) == []


def test_speed_quality_threshold_comes_from_settings(agent, now, settings):
    weekly(agent, "cycle_time", [10, 9, 8, 6])
    weekly(agent, "accuracy", [95, 93, 90, 85])  # -10.5%
    settings.STEWARD_ALERTS = {**settings.STEWARD_ALERTS, "speed_quality_min_change": 0.2}
    assert trends.speed_quality(now=now) == []


# --- adoption low ------------------------------------------------------------------------------

def test_adoption_low_fires_when_quality_meets_its_bar_and_adoption_does_not(agent, now):
    weekly(agent, "accuracy", [94, 95])
    weekly(agent, "adoption", [30, 35])
    [finding] = trends.adoption_low(now=now)
    assert finding.action == "improve_adoption"
    assert finding.evidence["low"] == [{"metric": "adoption", "name": "Adoption", "value": 35,
                                        "bar": 50.0}]


def test_adoption_low_uses_the_owners_target(agent, now):
    weekly(agent, "accuracy", [94, 95])
    weekly(agent, "adoption", [30, 35])
    Target.objects.create(agent=agent, metric_id=_metric("adoption"), target=30)
    assert trends.adoption_low(now=now) == []


def test_adoption_low_quiet_when_quality_is_low_too(agent, now):
    weekly(agent, "accuracy", [70, 72])
    weekly(agent, "adoption", [30, 35])
    assert trends.adoption_low(now=now) == []


def _metric(key):
    from metrics.models import Metric

    return Metric.objects.get(key=key).pk


# --- cost drift --------------------------------------------------------------------------------

def test_cost_drift_fires_when_cost_per_action_climbs_above_its_weeks(agent, now):
    weekly(agent, "cost_per_action", [0.10, 0.10, 0.11, 0.09, 0.15])
    [finding] = trends.cost_drift(now=now)
    assert finding.action == "optimise_cost"
    drift = finding.evidence["drifts"][0]
    assert drift["metric"] == "cost_per_action" and drift["baseline"] == pytest.approx(0.1)


def test_cost_drift_compares_with_the_human_baseline_where_set(agent, now):
    weekly(agent, "cost_per_action", [0.10, 0.10, 0.11, 0.09, 0.15])
    Target.objects.create(agent=agent, metric_id=_metric("cost_per_action"), human_baseline=2.0)
    assert trends.cost_drift(now=now) == []


def test_cost_drift_fires_when_the_budget_is_projected_to_be_exceeded(agent):
    now = timezone.now().replace(day=10, hour=12)
    Agent.objects.filter(pk=agent.pk).update(monthly_cost_budget=Decimal("100"))
    action(agent, cost_usd=Decimal("50"), created_at=now - timedelta(days=2))
    [finding] = trends.cost_drift(now=now)
    assert finding.evidence["projection"]["projected_usd"] > 100


def test_cost_drift_quiet_when_steady_and_on_budget(agent):
    now = timezone.now().replace(day=10, hour=12)
    weekly(agent, "cost_per_action", [0.10, 0.10, 0.11, 0.09, 0.105])
    Agent.objects.filter(pk=agent.pk).update(monthly_cost_budget=Decimal("1000"))
    action(agent, cost_usd=Decimal("50"), created_at=now - timedelta(days=2))
    assert trends.cost_drift(now=now) == []


# --- override spike ----------------------------------------------------------------------------

def _decisions(agent, reviewer, *, days_ago, n, overridden, now):
    for i in range(n):
        decided(agent, reviewer, at=now - timedelta(days=days_ago, minutes=i),
                overridden=i < overridden)


def test_override_spike_fires_above_the_trailing_average(agent, now):
    reviewer = UserFactory()
    _decisions(agent, reviewer, days_ago=14, n=20, overridden=2, now=now)  # 10%
    _decisions(agent, reviewer, days_ago=1, n=20, overridden=6, now=now)   # 30%
    [finding] = trends.override_spike(now=now)
    assert finding.severity == "warning"
    assert (finding.evidence["rate"], finding.evidence["trailing_rate"]) == (30.0, 10.0)


def test_override_spike_is_critical_above_the_hard_limit(agent, now):
    _decisions(agent, UserFactory(), days_ago=1, n=10, overridden=6, now=now)  # 60%, no history
    [finding] = trends.override_spike(now=now)
    assert finding.severity == "critical"


@pytest.mark.parametrize("recent_overridden, recent_n", [(3, 20), (6, 9)])
def test_override_spike_quiet_when_small_or_too_few(agent, now, recent_overridden, recent_n):
    reviewer = UserFactory()
    _decisions(agent, reviewer, days_ago=14, n=20, overridden=2, now=now)
    _decisions(agent, reviewer, days_ago=1, n=recent_n, overridden=recent_overridden, now=now)
    assert trends.override_spike(now=now) == []


# --- blast radius ------------------------------------------------------------------------------

def test_blast_radius_fires_on_a_write_limit_hit(agent, now):
    Agent.objects.filter(pk=agent.pk).update(max_writes_per_hour=5)
    held = action(agent, decision="review", status="pending", created_at=now - timedelta(hours=2),
                  reasons=[{"code": "blast_radius", "message": "5 execute actions"}])
    [finding] = limits.blast_radius(now=now)
    assert finding.severity == "critical" and finding.evidence["held"] == 1
    assert finding.evidence["requests"] == [str(held.public_id)]


def test_blast_radius_quiet_for_other_reasons_or_old_hits(agent, now):
    action(agent, decision="review", status="pending",
           reasons=[{"code": "guardrail", "message": "x"}])
    action(agent, decision="review", status="pending", created_at=now - timedelta(hours=30),
           reasons=[{"code": "blast_radius", "message": "x"}])
    assert limits.blast_radius(now=now) == []


# --- review backlog ----------------------------------------------------------------------------

def test_review_backlog_fires_on_overdue_items(agent, now):
    action(agent, decision="review", status="pending", due_at=now - timedelta(hours=1))
    [finding] = people.review_backlog(now=now)
    assert finding.evidence["overdue"] == 1


def test_review_backlog_fires_on_rising_latency(agent, now):
    reviewer = UserFactory()
    for days_ago, hours in ((10, 2), (9, 2), (2, 8), (1, 9)):
        action(agent, decision="review", status="approved", reviewed_by=reviewer,
               created_at=now - timedelta(days=days_ago, hours=hours),
               reviewed_at=now - timedelta(days=days_ago))
    [finding] = people.review_backlog(now=now)
    assert finding.evidence["median_latency_hours"] == 8.5
    assert finding.evidence["previous_median_latency_hours"] == 2.0


def test_review_backlog_quiet_when_on_time(agent, now):
    action(agent, decision="review", status="pending", due_at=now + timedelta(hours=1))
    assert people.review_backlog(now=now) == []


# --- stale or orphan data ----------------------------------------------------------------------

def test_stale_data_fires_per_source_problem(agent, now):
    maintainer = UserFactory()
    fresh = DataSourceFactory(slug="fresh", maintainer=maintainer, max_age=timedelta(days=1),
                              refreshed_at=now)
    stale = DataSourceFactory(slug="stale", maintainer=maintainer, max_age=timedelta(days=1),
                              refreshed_at=now - timedelta(days=2))
    orphan = DataSourceFactory(slug="orphan", maintainer=None)
    unapproved = DataSourceFactory(slug="unapproved", maintainer=maintainer, approved=False)
    agent.sources.set([fresh, stale, orphan, unapproved])
    found = {f.subject: f for f in registry.stale_data(now=now)}
    assert set(found) == {"source:stale", "source:orphan", "source:unapproved"}
    assert found["source:orphan"].action == "assign_maintainer"
    assert found["source:stale"].evidence["stale"] is True


def test_stale_data_counts_an_inactive_maintainer_as_none(agent, now):
    gone = UserFactory(is_active=False)
    agent.sources.set([DataSourceFactory(slug="kb", maintainer=gone)])
    [finding] = registry.stale_data(now=now)
    assert "inactive" in finding.message


# --- unclear ownership -------------------------------------------------------------------------

def test_unclear_ownership_fires_on_an_inactive_owner(agent, now):
    owner = agent.business_owner
    owner.is_active = False
    owner.save()
    [finding] = registry.unclear_ownership(now=now)
    assert finding.severity == "critical"  # the only owner: nobody active can pause it
    assert finding.action == "assign_owner"


def test_unclear_ownership_fires_on_a_missing_owner(agent, now):
    Agent.objects.filter(pk=agent.pk).update(technical_owner=None)
    [finding] = registry.unclear_ownership(now=now)
    assert finding.evidence["missing"] == ["technical owner"]
    assert finding.severity == "warning"


def test_unclear_ownership_quiet_for_a_proposed_or_well_owned_agent(agent, now):
    Agent.objects.filter(pk=agent.pk).update(status="proposed", technical_owner=None)
    assert registry.unclear_ownership(now=now) == []
    Agent.objects.filter(pk=agent.pk).update(status="pilot",
                                             technical_owner=agent.business_owner)
    assert registry.unclear_ownership(now=now) == []


# --- incidents unreviewed ----------------------------------------------------------------------

def _incident(agent, *, hours_ago, status="open", severity="medium"):
    incident = Incident.objects.create(agent=agent, category="other", severity=severity,
                                       description="Wrong.", reported_by=agent.business_owner,
                                       status=status)
    Incident.objects.filter(pk=incident.pk).update(
        reported_at=timezone.now() - timedelta(hours=hours_ago))
    return incident


def test_incidents_unreviewed_fires_on_an_old_open_incident(agent, now):
    incident = _incident(agent, hours_ago=50, severity="high")
    [finding] = people.incidents_unreviewed(now=now)
    assert finding.severity == "critical" and finding.evidence["incidents"] == [incident.pk]


def test_incidents_unreviewed_quiet_when_recent_or_investigated(agent, now):
    _incident(agent, hours_ago=2)
    _incident(agent, hours_ago=100, status="investigating")
    _incident(agent, hours_ago=100, status="resolved")
    assert people.incidents_unreviewed(now=now) == []


# --- decisions unreviewed ----------------------------------------------------------------------

def test_decisions_unreviewed_fires_when_the_review_is_overdue(agent, now):
    Agent.objects.filter(pk=agent.pk).update(created_at=now - timedelta(days=10))
    [finding] = people.decisions_unreviewed(now=now)
    assert finding.action == "schedule_review" and finding.evidence["cadence"] == "week"


def test_decisions_unreviewed_quiet_after_a_recent_review(agent, now):
    Agent.objects.filter(pk=agent.pk).update(created_at=now - timedelta(days=10))
    ScorecardReview.objects.create(agent=agent, grain="week", period_start=now.date(),
                                   decision="keep", reviewer=agent.business_owner)
    assert people.decisions_unreviewed(now=now) == []


# --- autonomy without evidence -----------------------------------------------------------------

def _raise_in_the_trail(agent, old, new, **data):
    """A raise recorded before autonomy changes existed (or written past the services)."""
    from portal import audit

    Agent.objects.filter(pk=agent.pk).update(autonomy_level=new)
    audit.record(actor=agent.business_owner, verb="agent.changed", obj=agent,
                 data={"changes": {"autonomy_level": [old, new]}, **data})


def test_autonomy_without_evidence_fires_on_a_raise_without_a_change(agent, now):
    _raise_in_the_trail(agent, 2, 3)
    [finding] = registry.autonomy_without_evidence(now=now)
    assert finding.action == "lower_autonomy" and finding.evidence["level"] == 3


def test_autonomy_without_evidence_fires_on_an_agent_started_above_l2(db, now):
    high = pilot_agent(slug="bold", autonomy_level=3)
    [finding] = registry.autonomy_without_evidence(now=now)
    assert finding.agent == high


def test_autonomy_without_evidence_fires_when_the_change_has_no_figures(agent, now):
    change = AutonomyChange.objects.create(agent=agent, from_level=2, to_level=3, reason="x",
                                           status="approved", evidence={"figures": []})
    _raise_in_the_trail(agent, 2, 3, autonomy_change=change.pk)
    [finding] = registry.autonomy_without_evidence(now=now)
    assert finding.evidence["autonomy_change"] == change.pk


def test_autonomy_without_evidence_quiet_after_an_approved_change(agent, now):
    from agents import autonomy

    weekly(agent, "accuracy", [95, 96])
    owner = agent.business_owner
    requester = UserFactory()
    services.agent_update(actor=None, agent=agent, process_owner=requester)
    change = autonomy.autonomy_change_request(actor=requester, agent=agent, to_level=3,
                                              reason="Accurate.")
    autonomy.autonomy_change_approve(actor=owner, change=change)
    assert registry.autonomy_without_evidence(now=now) == []
    # and a later lowering needs no evidence either
    services.agent_update(actor=None, agent=agent, autonomy_level=2)
    assert registry.autonomy_without_evidence(now=now) == []


# --- rubber-stamping ---------------------------------------------------------------------------

def test_rubber_stamping_fires_for_a_fast_approver(agent, now):
    stamper = UserFactory(username="sam")
    for i in range(60):
        decided(agent, stamper, at=now - timedelta(hours=2, seconds=10 * i))
    [finding] = people.rubber_stamping(now=now)
    assert (finding.agent, finding.subject, finding.action) == (None, "reviewer:sam",
                                                                "coach_reviewer")
    assert finding.evidence["median_gap_seconds"] == 10.0


@pytest.mark.parametrize("n, overridden, gap", [(40, 0, 10), (60, 3, 10), (60, 0, 120)])
def test_rubber_stamping_quiet_for_few_critical_or_careful_reviewers(agent, now, n, overridden,
                                                                     gap):
    reviewer = UserFactory()
    for i in range(n):
        decided(agent, reviewer, at=now - timedelta(hours=2, seconds=gap * i),
                overridden=i < overridden)
    assert people.rubber_stamping(now=now) == []


def test_rubber_stamping_fires_on_sampled_items_left_unchecked(agent, now):
    action(agent, sampled=True, due_at=now - timedelta(hours=1))
    action(agent, sampled=True, due_at=now + timedelta(hours=1))
    action(agent, sampled=True, due_at=now - timedelta(hours=1), sample_verdict="looks_right")
    [finding] = people.rubber_stamping(now=now)
    assert (finding.agent, finding.subject, finding.evidence["unchecked"]) == (agent, "samples", 1)


# --- budget ------------------------------------------------------------------------------------

@pytest.mark.parametrize("spent, severity", [("79", None), ("80", "warning"), ("100", "critical")])
def test_budget_warns_at_80_and_is_critical_at_100_percent(agent, now, spent, severity):
    Agent.objects.filter(pk=agent.pk).update(monthly_cost_budget=Decimal("100"))
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    action(agent, cost_usd=Decimal(spent), created_at=max(month_start, now - timedelta(hours=1)))
    action(agent, cost_usd=Decimal("500"), created_at=month_start - timedelta(days=1))  # last month
    found = limits.budget(now=now)
    assert [f.severity for f in found] == ([severity] if severity else [])


# --- the run -----------------------------------------------------------------------------------

def test_run_raises_refreshes_and_resolves(agent, now):
    Agent.objects.filter(pk=agent.pk).update(monthly_cost_budget=Decimal("100"))
    spend = action(agent, cost_usd=Decimal("90"), created_at=now - timedelta(minutes=5))
    result = detectors.run_detectors(now=now)
    assert result["failed"] == [] and result["kinds"]["budget"] == {"firing": 1, "resolved": 0}
    alert = Alert.objects.get(kind="budget")
    assert alert.status == "open"
    assert detectors.run_detectors(now=now + timedelta(minutes=1))["kinds"]["budget"][
        "firing"] == 1
    assert Alert.objects.filter(kind="budget").count() == 1
    spend.cost_usd = Decimal("10")
    spend.save()
    assert detectors.run_detectors(now=now + timedelta(minutes=2))["kinds"]["budget"] == {
        "firing": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.auto_resolved


def test_a_failing_detector_leaves_its_alerts_alone(agent, now, monkeypatch):
    Agent.objects.filter(pk=agent.pk).update(monthly_cost_budget=Decimal("100"))
    action(agent, cost_usd=Decimal("90"), created_at=now - timedelta(minutes=5))
    detectors.run_detectors(now=now)

    def broken(*, now):
        raise RuntimeError("boom")

    monkeypatch.setitem(detectors.DETECTORS, "budget", broken)
    result = detectors.run_detectors(now=now)
    assert result["failed"] == ["budget"]
    assert Alert.objects.get(kind="budget").status == "open"
    assert AuditEvent.objects.filter(verb="alert.auto_resolved").count() == 0
