"""Warning signs in the demo (`seed_demo`), so the Alerts page has work on the first run.

Most signs are already in the demo's story (metrics.demo, demo/registry.yaml): refund-replies
got faster while its quality fell, account-research's briefs are good but little used, the
refund policy has no maintainer and the web analytics export is not approved, and
refund-replies' weekly scorecard review is overdue. One more is set here on the first load:
the refund the gate sent to the Managers has waited since yesterday, past its due time (a
review backlog), before the demo metrics are written, since it moves a day with gate calls.
Then, after seed_demo's commit, the detectors run once, as the hourly beat task would.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from metrics.detectors import run_detectors
from reviews.models import ActionRequest

OVERDUE_PROPOSAL = ("refund-replies", "demo-1")  # (agent, idempotency key) in seed_demo
WAITED = timedelta(hours=30)  # past its 24-hour SLA, short of the 72 hours that expire it


@dataclass(frozen=True)
class Raised:
    firing: int
    kinds: tuple[str, ...]

    @property
    def summary(self) -> str:
        if not self.firing:
            return "Alerts: no warning sign in the demo data."
        return (f"Alerts: {self.firing} warning sign{'s' if self.firing != 1 else ''} found "
                f"({', '.join(self.kinds)}); see /metrics/alerts/.")


def make_backlog(*, now: datetime | None = None) -> int:
    """Back-date the demo's pending refund by WAITED, so it is past due (the first load only:
    it must not move on every restart). Returns how many items moved (0 or 1)."""
    now = now or timezone.now()
    slug, key = OVERDUE_PROPOSAL
    # created_at is set by the gate: the demo pretends the proposal came in yesterday
    return ActionRequest.objects.filter(
        agent__slug=slug, idempotency_key=key, status=ActionRequest.Status.PENDING,
        due_at__gte=now,
    ).update(created_at=F("created_at") - WAITED, due_at=F("due_at") - WAITED)


def raise_alerts(*, now: datetime | None = None) -> Raised:
    """Run the detectors once over the demo, as the hourly beat task would."""
    result = run_detectors(now=now)
    kinds = tuple(sorted(kind for kind, counts in result["kinds"].items()
                         if counts["firing"]))
    return Raised(firing=result["firing"], kinds=kinds)
