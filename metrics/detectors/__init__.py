"""The warning-sign detectors and the run that turns their findings into alerts.

Each detector is a small function `(*, now) -> list[Finding]` over the database, with its
thresholds in settings.STEWARD_ALERTS (defaults in metrics.detectors.base.DEFAULTS). The
`alerts-detect` beat task calls `run_detectors()`: every finding is raised (opened, refreshed
or reopened, metrics.alerts.alert_raise), and the active alerts of each kind that did not
fire this run resolve themselves. A detector that fails is logged and its alerts are left
as they are (they must not resolve because the check broke).
"""

import logging
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

from metrics import alerts
from metrics.detectors import limits, people, registry, trends
from metrics.detectors.base import Finding
from metrics.models import Alert

logger = logging.getLogger(__name__)
Kind = Alert.Kind

# One detector per kind, in the order they run.
DETECTORS: dict[str, Callable[..., list[Finding]]] = {
    Kind.SPEED_QUALITY: trends.speed_quality,
    Kind.ADOPTION_LOW: trends.adoption_low,
    Kind.COST_DRIFT: trends.cost_drift,
    Kind.OVERRIDE_SPIKE: trends.override_spike,
    Kind.BLAST_RADIUS: limits.blast_radius,
    Kind.REVIEW_BACKLOG: people.review_backlog,
    Kind.STALE_DATA: registry.stale_data,
    Kind.UNCLEAR_OWNERSHIP: registry.unclear_ownership,
    Kind.INCIDENTS_UNREVIEWED: people.incidents_unreviewed,
    Kind.DECISIONS_UNREVIEWED: people.decisions_unreviewed,
    Kind.AUTONOMY_WITHOUT_EVIDENCE: registry.autonomy_without_evidence,
    Kind.RUBBER_STAMPING: people.rubber_stamping,
    Kind.BUDGET: limits.budget,
}

__all__ = ["DETECTORS", "Finding", "raise_findings", "run_detectors"]


def raise_findings(kind: str, findings: list[Finding], *, now: datetime) -> dict[str, int]:
    """Raise every finding of one kind and resolve that kind's alerts that did not fire."""
    for finding in findings:
        if finding.kind != kind:
            raise ValueError(f"a {kind} detector returned a {finding.kind} finding")
        alerts.alert_raise(kind=finding.kind, agent=finding.agent, subject=finding.subject,
                           severity=finding.severity, title=finding.title,
                           message=finding.message, recommendation=finding.recommendation,
                           action=finding.action, evidence=finding.evidence, now=now)
    resolved = alerts.auto_resolve(kind=kind, still_firing_keys={f.key for f in findings},
                                   now=now)
    return {"firing": len(findings), "resolved": resolved}


def run_detectors(now: datetime | None = None) -> dict:
    """Run every detector; returns {"firing": n, "resolved": n, "failed": [kinds],
    "kinds": {kind: {"firing": n, "resolved": n}}} (JSON, for the task's result)."""
    now = now or timezone.now()
    result = {"firing": 0, "resolved": 0, "failed": [], "kinds": {}}
    for kind, detector in DETECTORS.items():
        try:
            counts = raise_findings(str(kind), detector(now=now), now=now)
        except Exception:
            logger.exception("Detector %s failed; its alerts are left as they are", kind)
            result["failed"].append(str(kind))
            continue
        result["kinds"][str(kind)] = counts
        result["firing"] += counts["firing"]
        result["resolved"] += counts["resolved"]
    return result
