"""The metric catalogue in Django's admin: Admins add metrics; built-ins keep their key and
cannot be deleted; imports, rollups and reviews are read-only; targets go through the service."""

import pytest
from django.urls import reverse

from metrics.models import Metric, Target
from portal.models import AuditEvent
from portal.roles import ADMINS
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, roles):
    user = UserFactory(username="ada-staff", groups=[ADMINS], is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", ["metric", "target", "importbatch", "rollup",
                                   "scorecardreview"])
def test_each_table_has_a_list(admin_client, model):
    assert admin_client.get(reverse(f"admin:metrics_{model}_changelist")).status_code == 200


@pytest.mark.parametrize("model", ["importbatch", "rollup", "scorecardreview"])
def test_records_are_read_only(admin_client, model):
    assert admin_client.get(reverse(f"admin:metrics_{model}_add")).status_code == 403


def test_builtin_metric_keeps_its_key_and_cannot_be_deleted(admin_client):
    accuracy = Metric.objects.get(key="accuracy")
    change = admin_client.get(reverse("admin:metrics_metric_change", args=[accuracy.pk]))
    body = change.content.decode()
    assert 'name="name"' in body and 'name="key"' not in body
    delete = admin_client.get(reverse("admin:metrics_metric_delete", args=[accuracy.pk]))
    assert delete.status_code == 403
    changelist = admin_client.get(reverse("admin:metrics_metric_changelist")).content.decode()
    assert "delete_selected" not in changelist


def test_admin_adds_a_metric_and_may_delete_it(admin_client):
    response = admin_client.post(reverse("admin:metrics_metric_add"), {
        "key": "first_contact_resolution", "name": "First-contact resolution",
        "layer": "business", "unit": "%", "aggregation": "mean", "higher_is_better": "on",
        "min_value": "0", "max_value": "100", "position": "30"})
    assert response.status_code == 302, response.content.decode()[:2000]
    metric = Metric.objects.get(key="first_contact_resolution")
    assert not metric.builtin
    delete = admin_client.post(reverse("admin:metrics_metric_delete", args=[metric.pk]),
                               {"post": "yes"})
    assert delete.status_code == 302 and not Metric.objects.filter(pk=metric.pk).exists()


def test_target_saved_in_the_admin_is_audited(admin_client, roles):
    accuracy = Metric.objects.get(key="accuracy")
    response = admin_client.post(reverse("admin:metrics_target_add"), {
        "agent": roles.agent.pk, "metric": accuracy.pk, "target": "95",
        "human_baseline": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Target.objects.get().target == 95
    assert AuditEvent.objects.filter(verb="metric.target_set", agent=roles.agent).count() == 1
