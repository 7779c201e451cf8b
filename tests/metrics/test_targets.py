"""Targets and human baselines: the service (permission, audit, bad input) and the inline form
on the agent's scorecard (htmx and without JavaScript)."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from metrics import services
from metrics.models import Metric, Target
from portal.models import AuditEvent
from tests.metrics.test_scorecard_fleet import set_status

pytestmark = pytest.mark.django_db
HTMX = {"HX-Request": "true"}


def metric(key: str) -> Metric:
    return Metric.objects.get(key=key)


def save(client, agent, headers=None, **data):
    return client.post(reverse("metrics:target-save", args=[agent.slug]),
                       {"metric": "accuracy", "target": "", "human_baseline": "", **data},
                       headers=headers or {})


# --- the service -----------------------------------------------------------------------------

def test_owner_sets_a_target_and_it_is_audited(roles):
    saved = services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("accuracy"),
                                target=95, human_baseline=88.5)
    assert (saved.target, saved.human_baseline, saved.updated_by) == (95, 88.5, roles.owner)
    services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("accuracy"),
                        target=97, human_baseline=88.5)
    events = list(AuditEvent.objects.filter(verb="metric.target_set").order_by("id"))
    assert [e.data for e in events] == [
        {"metric": "accuracy", "changes": {"target": [None, 95.0],
                                           "human_baseline": [None, 88.5]}},
        {"metric": "accuracy", "changes": {"target": [95.0, 97.0]}},
    ]
    assert {(e.actor_user, e.agent_id) for e in events} == {(roles.owner, roles.agent.pk)}
    assert Target.objects.get().target == 97


def test_same_values_again_change_nothing_and_record_nothing(roles):
    for _ in range(2):
        services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("adoption"),
                            target=60, human_baseline=None)
    assert AuditEvent.objects.filter(verb="metric.target_set").count() == 1


def test_clearing_both_removes_the_target(roles):
    services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("adoption"),
                        target=60, human_baseline=40)
    assert services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("adoption"),
                               target=None, human_baseline="") is None
    assert not Target.objects.exists()
    assert AuditEvent.objects.filter(verb="metric.target_set").count() == 2


@pytest.mark.parametrize("role", ["reviewer", "pauser", "revops", "viewer", "other_reviewer"])
def test_only_those_who_may_change_the_agent_set_targets(roles, role):
    with pytest.raises(PermissionDenied):
        services.target_set(actor=getattr(roles, role), agent=roles.agent,
                            metric=metric("accuracy"), target=95, human_baseline=None)
    assert not Target.objects.exists()


def test_admin_sets_targets_on_any_agent(roles):
    services.target_set(actor=roles.admin, agent=roles.other, metric=metric("cost_usd"),
                        target=500, human_baseline=900)
    assert Target.objects.get().agent == roles.other


@pytest.mark.parametrize(("target", "baseline", "field", "message"), [
    ("lots", None, "target", "Enter a number"),
    (None, "nan", "human_baseline", "Enter a finite number."),
    (150, None, "target", "Accuracy is between 0 and 100; 150 is outside that."),
    (None, -1, "human_baseline", "between 0 and 100; -1 is outside that."),
])
def test_bad_numbers_name_the_field_and_change_nothing(roles, target, baseline, field, message):
    with pytest.raises(ValidationError) as raised:
        services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("accuracy"),
                            target=target, human_baseline=baseline)
    assert list(raised.value.error_dict) == [field]
    assert message in " ".join(raised.value.messages)
    assert not Target.objects.exists() and not AuditEvent.objects.filter(
        verb="metric.target_set").exists()


def test_retired_agent_targets_are_frozen(roles):
    set_status(roles.agent, "retired")
    with pytest.raises(PermissionDenied):
        services.target_set(actor=roles.owner, agent=roles.agent, metric=metric("accuracy"),
                            target=95, human_baseline=None)


# --- the form on the page ----------------------------------------------------------------------

def test_owner_saves_a_target_without_javascript(client, roles):
    client.force_login(roles.owner)
    response = save(client, roles.agent, target="95", human_baseline="90")
    assert response.status_code == 302
    assert response.url == reverse("metrics:agent", args=["refund-replies"]) + "#targets"
    assert Target.objects.values_list("target", "human_baseline").get() == (95, 90)
    body = client.get(response.url).content.decode()
    assert "Saved the target of Accuracy." in body
    assert 'id="target-accuracy-target" value="95"' in body


def test_owner_saves_a_target_with_htmx_and_gets_the_row_back(client, roles):
    client.force_login(roles.owner)
    response = save(client, roles.agent, headers=HTMX, target="0.05", metric="cost_per_action")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<form method="post"') and "<html" not in body
    assert 'id="target-cost_per_action"' in body and "Saved" in body
    assert Target.objects.get().target == 0.05


@pytest.mark.parametrize("headers", [None, HTMX], ids=["plain", "htmx"])
def test_not_a_number_is_shown_next_to_the_field(client, roles, headers):
    client.force_login(roles.owner)
    response = save(client, roles.agent, headers=headers, target="ninety")
    assert response.status_code == (200 if headers else 400)
    body = response.content.decode()
    assert 'id="target-accuracy-target-error">Enter a number, e.g. 95 or 1.5.</small>' in body
    assert 'value="ninety"' in body  # what they typed stays to be corrected
    assert not Target.objects.exists()


def test_out_of_range_is_shown_next_to_the_field(client, roles):
    client.force_login(roles.owner)
    response = save(client, roles.agent, headers=HTMX, human_baseline="101")
    assert "Accuracy is between 0 and 100; 101 is outside that." in response.content.decode()
    assert not Target.objects.exists()


def test_unknown_metric_is_a_clear_400(client, roles):
    client.force_login(roles.owner)
    response = save(client, roles.agent, metric="happiness", target="5")
    assert response.status_code == 400
    assert "There is no such metric." in response.content.decode()
    assert save(client, roles.agent, headers=HTMX, metric="happiness").status_code == 400


@pytest.mark.parametrize(("role", "status"), [("reviewer", 403), ("revops", 403),
                                              ("pauser", 403), ("viewer", 404)])
def test_others_may_not_save_targets(client, roles, role, status):
    client.force_login(getattr(roles, role))
    assert save(client, roles.agent, target="95").status_code == status
    assert not Target.objects.exists()


def test_readers_see_targets_without_a_form(client, roles):
    Target.objects.create(agent=roles.agent, metric=metric("accuracy"), target=95)
    client.force_login(roles.revops)
    body = client.get(reverse("metrics:agent", args=["refund-replies"])).content.decode()
    assert 'action="/metrics/refund-replies/targets/"' not in body
    assert "Only the agent's owners and admins change them." in body
    assert '<span class="num">95</span>' in body
