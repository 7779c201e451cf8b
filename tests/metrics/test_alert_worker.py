"""The `alerts-detect` beat task, run by a real Celery worker against the test database."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from agents.models import Agent
from metrics.models import Alert
from metrics.tasks import alerts_detect
from portal.models import TaskDelivery
from tests.metrics.alert_helpers import action, pilot_agent
from tests.portal.test_celery import real_worker

QUEUE = "steward-test-alerts"


def test_the_beat_schedule_runs_the_detectors_hourly_by_default():
    entry = settings.CELERY_BEAT_SCHEDULE["alerts-detect"]
    assert entry["task"] == alerts_detect.name == "metrics.tasks.alerts_detect"
    assert entry["schedule"] == 3600


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_alerts_detect_and_raises_the_alert(tmp_path):
    agent = pilot_agent(slug="spender", monthly_cost_budget=Decimal("100"))
    action(agent, cost_usd=Decimal("120"), created_at=timezone.now() - timedelta(minutes=1))
    Agent.objects.filter(pk=agent.pk).update(auto_pause_on_critical=True)

    with real_worker(tmp_path, queue=QUEUE) as log_path:
        try:
            result = alerts_detect.apply_async(queue=QUEUE)
            counts = result.get(timeout=90)
        except Exception:
            pytest.fail(f"the worker did not run the task; its log:\n{log_path.read_text()}")

    assert counts["failed"] == []
    assert counts["kinds"]["budget"] == {"firing": 1, "resolved": 0}
    alert = Alert.objects.get(kind="budget", agent=agent)
    assert (alert.status, alert.severity) == ("open", "critical")
    assert alert.deliveries.filter(channel="email").exists()
    agent.refresh_from_db()
    assert agent.status == "pilot"  # a budget alert never pauses
    assert TaskDelivery.objects.get(task_id=result.id).deliveries == 1
