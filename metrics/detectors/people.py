"""Warning signs in what people do (or do not do): a review backlog, rubber-stamping,
incidents nobody looks at, scorecard decisions nobody takes."""

import statistics
from collections import defaultdict
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.utils import timezone

from metrics.detectors.base import ACTIVE, WATCHED, Finding, iso, pct, threshold, watched_agents
from metrics.models import Alert, ScorecardReview
from metrics.selectors import review_state
from reviews.models import ActionRequest, Incident

Kind, Severity = Alert.Kind, Alert.Severity
Status = ActionRequest.Status
User = get_user_model()


# --- review backlog ----------------------------------------------------------------------------

def _median_latency_hours(agent_ids, since: datetime, until: datetime) -> dict[int, float]:
    """Median hours from proposal to a person's decision, per agent, for decisions taken
    between the two times."""
    latencies = defaultdict(list)
    for agent_id, created, reviewed in ActionRequest.objects.filter(
            agent_id__in=agent_ids, reviewed_by__isnull=False, reviewed_at__gte=since,
            reviewed_at__lt=until).values_list("agent_id", "created_at", "reviewed_at"):
        latencies[agent_id].append((reviewed - created).total_seconds() / 3600)
    return {agent_id: statistics.median(values) for agent_id, values in latencies.items()}


def review_backlog(*, now: datetime) -> list[Finding]:
    """Pending items past their due time, or the median review latency of the last 7 days
    risen by `backlog_latency_rise` on the 7 days before (and above a floor)."""
    min_overdue = int(threshold("backlog_min_overdue"))
    rise, floor = threshold("backlog_latency_rise"), threshold("backlog_latency_min_hours")
    agents = list(watched_agents(WATCHED))
    ids = [a.pk for a in agents]
    overdue = {r["agent_id"]: r for r in ActionRequest.objects.filter(
        agent_id__in=ids, status=Status.PENDING, due_at__lt=now).values("agent_id")
        .order_by().annotate(n=Count("id"), oldest=Min("due_at"))}
    week_ago = now - timedelta(days=7)
    latency = _median_latency_hours(ids, week_ago, now)
    before = _median_latency_hours(ids, week_ago - timedelta(days=7), week_ago)
    findings = []
    for agent in agents:
        late = overdue.get(agent.pk)
        late_n = late["n"] if late else 0
        now_h, then_h = latency.get(agent.pk), before.get(agent.pk)
        rising = (now_h is not None and then_h is not None and now_h >= floor
                  and now_h > then_h * (1 + rise))
        if late_n < min_overdue and not rising:
            continue
        said = []
        if late_n >= min_overdue:
            said.append(f"{late_n} pending item{'s' if late_n != 1 else ''} past due "
                        f"(the oldest since {late['oldest']:%Y-%m-%d %H:%M} UTC)")
        if rising:
            said.append(f"the median review takes {now_h:.1f} h, up from {then_h:.1f} h the "
                        "week before")
        text = "; ".join(said)
        findings.append(Finding(
            kind=Kind.REVIEW_BACKLOG, agent=agent, severity=Severity.WARNING,
            title=f"Reviews of {agent.name} are falling behind",
            message=text[:1].upper() + text[1:] + ".",
            recommendation=("Work through the backlog in the review inbox; if it keeps "
                            "growing, add reviewers or lower the share of actions sent to "
                            "review where the figures allow it."),
            action="review_backlog",
            evidence={"overdue": late_n, "oldest_due": iso(late["oldest"]) if late else None,
                      "median_latency_hours": round(now_h, 2) if now_h is not None else None,
                      "previous_median_latency_hours": (round(then_h, 2) if then_h is not None
                                                        else None),
                      "latency_rise": rise, "latency_floor_hours": floor}))
    return findings


# --- rubber-stamping ---------------------------------------------------------------------------

BREAK = timedelta(hours=1)  # a longer gap between two decisions is a pause, not a review


def rubber_stamping(*, now: datetime) -> list[Finding]:
    """Per reviewer: more than `rubber_stamp_approval_share` of at least
    `rubber_stamp_min_items` decisions approved as proposed, with a median gap between
    consecutive decisions under `rubber_stamp_max_median_seconds`. Per agent: sampled
    actions left unchecked past their due time."""
    return _stamping_reviewers(now) + _unchecked_samples(now)


def _stamping_reviewers(now: datetime) -> list[Finding]:
    days = int(threshold("rubber_stamp_days"))
    min_items = int(threshold("rubber_stamp_min_items"))
    share_bar = threshold("rubber_stamp_approval_share")
    max_median = threshold("rubber_stamp_max_median_seconds")
    since = now - timedelta(days=days)
    decided = ActionRequest.objects.filter(reviewed_by__isnull=False, reviewed_at__gte=since,
                                           reviewed_at__lte=now)
    overridden = (Q(status=Status.REJECTED) | Q(edited_changes__isnull=False)
                  | Q(edited_content__isnull=False))
    counts = {r["reviewed_by"]: r for r in decided.values("reviewed_by").order_by().annotate(
        n=Count("id"), overridden=Count("id", filter=overridden)) if r["n"] >= min_items}
    findings = []
    for user in User.objects.filter(pk__in=counts).order_by("pk"):
        row = counts[user.pk]
        approved = row["n"] - row["overridden"]
        share = approved / row["n"]
        if share <= share_bar:
            continue
        times = list(decided.filter(reviewed_by=user).order_by("reviewed_at")
                     .values_list("reviewed_at", flat=True))
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)
                if b - a <= BREAK]
        if not gaps:
            continue
        median_gap = statistics.median(gaps)
        if median_gap > max_median:
            continue
        name = user.get_full_name() or user.get_username()
        findings.append(Finding(
            kind=Kind.RUBBER_STAMPING, agent=None, subject=f"reviewer:{user.get_username()}",
            severity=Severity.WARNING,
            title=f"{name} approves nearly everything, very fast",
            message=(f"{approved} of {row['n']} decisions in the last {days} days approved as "
                     f"proposed ({pct(100 * share)}), a median of {median_gap:.0f} s apart."),
            recommendation=("Talk with the reviewer: look at a few of their approvals together, "
                            "and spread the review load if they have too much of it."),
            action="coach_reviewer",
            evidence={"reviewer": user.get_username(), "reviewer_id": user.pk,
                      "decisions": row["n"], "approved_as_proposed": approved,
                      "share": round(share, 4), "median_gap_seconds": round(median_gap, 1),
                      "days": days, "min_items": min_items, "share_bar": share_bar,
                      "max_median_seconds": max_median}))
    return findings


def _unchecked_samples(now: datetime) -> list[Finding]:
    cutoff = now - timedelta(hours=threshold("sample_overdue_hours"))
    rows = {r["agent_id"]: r for r in ActionRequest.objects.filter(
        sampled=True, sample_verdict="", due_at__lt=cutoff).values("agent_id").order_by()
        .annotate(n=Count("id"), oldest=Min("due_at"))}
    findings = []
    for agent in watched_agents(WATCHED).filter(pk__in=rows):
        row = rows[agent.pk]
        findings.append(Finding(
            kind=Kind.RUBBER_STAMPING, agent=agent, subject="samples",
            severity=Severity.WARNING,
            title=f"Sampled actions of {agent.name} go unchecked",
            message=(f"{row['n']} sampled action{'s' if row['n'] != 1 else ''} not checked "
                     f"after their due time (the oldest due {row['oldest']:%Y-%m-%d %H:%M} "
                     "UTC): the after-the-fact review of L2 is not happening."),
            recommendation=("Check the sampled actions in the review inbox; if nobody has time "
                            "for them, the agent should not run at L2."),
            action="review_backlog",
            evidence={"unchecked": row["n"], "oldest_due": iso(row["oldest"])}))
    return findings


# --- incidents unreviewed ----------------------------------------------------------------------

def incidents_unreviewed(*, now: datetime) -> list[Finding]:
    """Incidents still `open` (nobody investigating) after `incident_open_hours`: logs exist,
    yet nobody checks them."""
    hours = threshold("incident_open_hours")
    old = Incident.objects.filter(status=Incident.Status.OPEN,
                                  reported_at__lt=now - timedelta(hours=hours))
    rows = {r["agent_id"]: r for r in old.values("agent_id").order_by().annotate(
        n=Count("id"), oldest=Min("reported_at"),
        serious=Count("id", filter=Q(severity__in=["high", "critical"])))}
    findings = []
    for agent in watched_agents(WATCHED).filter(pk__in=rows):
        row = rows[agent.pk]
        ids = list(old.filter(agent=agent).order_by("reported_at")
                   .values_list("pk", flat=True)[:10])
        findings.append(Finding(
            kind=Kind.INCIDENTS_UNREVIEWED, agent=agent,
            severity=Severity.CRITICAL if row["serious"] else Severity.WARNING,
            title=f"{row['n']} incident{'s' if row['n'] != 1 else ''} of {agent.name} "
                  "nobody has looked at",
            message=(f"Open for more than {hours:g} hours without anyone investigating, the "
                     f"oldest since {row['oldest']:%Y-%m-%d %H:%M} UTC"
                     + (f"; {row['serious']} of high or critical severity." if row["serious"]
                        else ".")),
            recommendation=("Logs exist, yet nobody checks them: have an owner investigate "
                            "each incident, run the rollback where needed, and resolve it."),
            action="review_incidents",
            evidence={"open": row["n"], "serious": row["serious"],
                      "oldest": iso(row["oldest"]), "hours": hours, "incidents": ids}))
    return findings


# --- decisions unreviewed ----------------------------------------------------------------------

def decisions_unreviewed(*, now: datetime) -> list[Finding]:
    """An agent whose scorecard review is overdue for its cadence (metrics.selectors)."""
    today = timezone.localdate(now)
    last = ScorecardReview.objects.filter(agent=OuterRef("pk")).order_by("-created_at", "-id")
    agents = (watched_agents(ACTIVE)
              .annotate(last_review_at=Subquery(last.values("created_at")[:1]),
                        last_decision=Subquery(last.values("decision")[:1]),
                        reviews=Count("scorecard_reviews")))
    findings = []
    for agent in agents:
        state = review_state(agent=agent, last_review_at=agent.last_review_at,
                             last_decision=agent.last_decision or "", today=today)
        if not state.overdue:
            continue
        days = (today - state.due).days
        since = (f"the last one was on {agent.last_review_at:%Y-%m-%d}"
                 if agent.last_review_at else "it has never been reviewed")
        findings.append(Finding(
            kind=Kind.DECISIONS_UNREVIEWED, agent=agent, severity=Severity.WARNING,
            title=f"The {state.cadence_label} scorecard review of {agent.name} is overdue",
            message=(f"The review was due on {state.due:%Y-%m-%d} ({days} day"
                     f"{'s' if days != 1 else ''} ago); {since}."),
            recommendation=("Owners review outputs, but nobody reviews decisions: look at the "
                            "scorecard and record a decision (expand, keep, revise or stop)."),
            action="schedule_review",
            evidence={"cadence": state.cadence, "due": state.due.isoformat(),
                      "days_overdue": days, "last_review_at": iso(agent.last_review_at),
                      "last_decision": agent.last_decision or ""}))
    return findings
