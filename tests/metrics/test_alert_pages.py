"""The alert pages (/metrics/alerts/, /metrics/alerts/<id>/): filters, who sees what, the
evidence and the recommended action, acknowledge and resolve (htmx and plain), the navigation
badge, the dashboard and agent page sections, and query counts."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents.models import AutonomyChange
from metrics import alert_selectors
from metrics.alerts import can_act_on_alert
from metrics.models import Alert
from portal.models import AuditEvent, User
from tests.factories import DataSourceFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def make_alert(agent=None, *, kind=Alert.Kind.REVIEW_BACKLOG, subject="", ago=timedelta(0),
               **fields) -> Alert:
    now = timezone.now() - ago
    fields = {"severity": Alert.Severity.WARNING, "title": f"{kind} on {agent or 'the fleet'}",
              "first_seen": now - timedelta(days=2), "opened_at": now - timedelta(days=1),
              "last_seen": now, **fields}
    return Alert.objects.create(
        kind=kind, agent=agent, subject=subject,
        dedupe_key=f"{kind}:{agent.pk if agent else '-'}:{subject}", **fields)


def titles(response) -> list[str]:
    return [alert.title for alert in response.context["page"]]


# --- the list --------------------------------------------------------------------------------

def test_list_shows_open_and_acknowledged_most_severe_then_newest_first(client, roles):
    agent = roles.agent
    make_alert(agent, kind="budget", title="old warning", ago=timedelta(hours=5))
    make_alert(agent, kind="cost_drift", title="new warning")
    make_alert(agent, kind="blast_radius", title="critical", severity="critical",
               ago=timedelta(hours=9))
    make_alert(agent, kind="adoption_low", title="info", severity="info")
    make_alert(agent, kind="stale_data", title="acknowledged", status="acknowledged",
               ago=timedelta(hours=1))
    make_alert(agent, kind="override_spike", title="resolved", status="resolved")
    client.force_login(roles.owner)
    response = client.get(reverse("alerts:list"))
    assert response.status_code == 200
    assert titles(response) == ["critical", "new warning", "acknowledged", "old warning",
                                "info"]
    everything = titles(client.get(reverse("alerts:list"), {"status": "all"}))
    assert "resolved" in everything and len(everything) == 6


def test_list_filters_by_status_severity_kind_and_agent(client, roles):
    make_alert(roles.agent, kind="budget", title="budget of refund", severity="critical")
    make_alert(roles.agent, kind="stale_data", title="stale refund source", status="resolved")
    make_alert(roles.other, kind="budget", title="budget of crm")
    client.force_login(roles.admin)
    url = reverse("alerts:list")
    assert titles(client.get(url, {"status": "resolved"})) == ["stale refund source"]
    assert titles(client.get(url, {"severity": "critical"})) == ["budget of refund"]
    assert sorted(titles(client.get(url, {"kind": "budget"}))) == ["budget of crm",
                                                                   "budget of refund"]
    assert titles(client.get(url, {"agent": "crm-hygiene"})) == ["budget of crm"]
    assert titles(client.get(url, {"agent": "refund-replies", "status": "all",
                                   "kind": "stale_data"})) == ["stale refund source"]
    body = client.get(url, {"kind": "rubber_stamping"}).content.decode()
    assert "No alert matches." in body and "Clear the filters" in body


def test_a_bad_filter_is_named_and_the_others_still_apply(client, roles):
    make_alert(roles.agent, kind="budget", title="budget", severity="critical")
    make_alert(roles.agent, kind="cost_drift", title="drift")
    client.force_login(roles.admin)
    response = client.get(reverse("alerts:list"), {"severity": "dreadful", "kind": "budget"})
    assert response.status_code == 200
    assert "severity" in response.context["filter_form"].errors
    assert titles(response) == ["budget"]


def test_htmx_filter_returns_only_the_results_fragment(client, roles):
    make_alert(roles.agent, title="budget alert", kind="budget")
    client.force_login(roles.admin)
    response = client.get(reverse("alerts:list"), {"kind": "budget"}, headers=HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="results">') and "<html" not in body
    assert "budget alert" in body


def test_list_pages_by_fifty(client, roles):
    for n in range(53):
        make_alert(roles.agent, subject=f"s{n}", title=f"alert {n}")
    client.force_login(roles.admin)
    first = client.get(reverse("alerts:list"))
    assert len(titles(first)) == 50 and "Page 1 of 2" in first.content.decode()
    second = client.get(reverse("alerts:list"), {"page": 2, "kind": "review_backlog"})
    assert len(titles(second)) == 3
    assert "?kind=review_backlog&amp;page=1" in second.content.decode()


# --- who sees what ---------------------------------------------------------------------------

def test_alerts_of_hidden_agents_are_invisible_everywhere(client, roles):
    mine = make_alert(roles.agent, title="refund alert")
    theirs = make_alert(roles.other, title="crm alert")
    fleet = make_alert(None, kind="rubber_stamping", subject="rita", title="fleet alert")
    expectations = {  # role → titles seen in the list
        "viewer": {"fleet alert"},
        "reviewer": {"refund alert", "fleet alert"},
        "other_reviewer": {"crm alert", "fleet alert"},
        "owner": {"refund alert", "fleet alert"},
        "revops": {"refund alert", "crm alert", "fleet alert"},
        "admin": {"refund alert", "crm alert", "fleet alert"},
    }
    for role, seen in expectations.items():
        user = getattr(roles, role)
        client.force_login(user)
        assert set(titles(client.get(reverse("alerts:list")))) == seen, role
        for alert in (mine, theirs, fleet):
            status = client.get(reverse("alerts:detail", args=[alert.pk])).status_code
            assert status == (200 if alert.title in seen else 404), (role, alert.title)
        assert alert_selectors.open_alert_count(user=user) == len(seen), role
        agents = [slug for slug, _name in alert_selectors.agent_choices(user=user)]
        assert "crm-hygiene" not in agents or "crm alert" in seen


def test_the_badge_query_agrees_with_the_visibility_rule_for_every_role(roles):
    """The badge's one statement and `alerts_visible_to` (the reference, through guardian)
    must say the same, for direct and group object permissions too."""
    from django.contrib.auth.models import Group

    third = make_agent(slug="third-agent")
    group = Group.objects.create(name="Support leads")
    lead = UserFactory(username="lea-lead")
    lead.groups.add(group)
    assign_perm("agents.view_agent", group, third)
    superuser = UserFactory(username="sam-super", is_superuser=True)
    for agent in (roles.agent, roles.other, third, None):
        for kind in ("budget", "stale_data"):
            make_alert(agent, kind=kind)
    make_alert(roles.agent, kind="cost_drift", status="acknowledged")
    users = [*roles.all().values(), lead, superuser]
    for user in users:
        reference = set(alert_selectors.alerts_visible_to(user)
                        .filter(status="open").values_list("pk", flat=True))
        user._steward_alert_count = None
        assert alert_selectors.open_alert_count(user=user) == len(reference), user.username
    assert len(set(alert_selectors.alerts_visible_to(lead).values_list("agent", flat=True))
               - {None}) == 1


def test_nav_badge_counts_open_alerts_the_user_sees(client, roles):
    make_alert(roles.agent, kind="budget")
    make_alert(roles.agent, kind="cost_drift")
    make_alert(roles.agent, kind="stale_data", status="acknowledged")
    make_alert(roles.other, kind="budget")
    client.force_login(roles.owner)
    body = client.get(reverse("agents:list")).content.decode()
    assert 'title="Open alerts you can see">2</span>' in body
    client.force_login(roles.viewer)
    assert "nav-alerts" not in client.get(reverse("agents:list")).content.decode()


def test_nav_badge_stops_at_99_plus(roles):
    for n in range(101):
        make_alert(None, subject=f"r{n}")
    assert alert_selectors.alert_badge(roles.viewer) == "99+"


def test_the_badge_costs_one_query_and_nothing_for_htmx_fragments(client, roles,
                                                                  django_assert_num_queries):
    make_alert(roles.agent)
    user = roles.owner
    with django_assert_num_queries(1):
        assert alert_selectors.alert_badge(user) == "1"
    with django_assert_num_queries(0):  # kept for the rest of the request
        assert alert_selectors.alert_badge(user) == "1"
    client.force_login(roles.owner)
    client.get(reverse("agents:list"))
    with CaptureQueriesContext(connection) as fragment:
        client.get(reverse("agents:list"), {"q": "x"}, headers=HTMX)
    assert not any("metrics_alert" in q["sql"] for q in fragment.captured_queries)


def test_anonymous_visitors_cost_no_badge_query(client):
    with CaptureQueriesContext(connection) as page:
        assert client.get(reverse("login")).status_code == 200
    assert not any("metrics_alert" in q["sql"] for q in page.captured_queries)


# --- one alert -------------------------------------------------------------------------------

def test_alert_page_shows_what_since_when_evidence_and_links(client, roles):
    alert = make_alert(
        roles.agent, kind=Alert.Kind.REVIEW_BACKLOG, severity="critical",
        title="7 items waited past their due time", message="Reviews are slow.",
        recommendation="Add a reviewer or lower the sample rate.", action="review_backlog",
        evidence={"overdue": 7, "median_latency_hours": 12.456, "oldest_due_at":
                  "2026-11-20T09:00:00+00:00", "by_week": {"this": 12.5, "before": 3.25},
                  "incident": 42})
    client.force_login(roles.owner)
    response = client.get(reverse("alerts:detail", args=[alert.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    for text in ("7 items waited past their due time", "Reviews are slow.",
                 "Add a reviewer or lower the sample rate.", "First seen", "Open since",
                 "Last seen", "Refund replies", "12.46", "2026-11-20", "By week › this",
                 "Work through its waiting items", "/reviews/?agent=refund-replies",
                 "/metrics/refund-replies/", "/incidents/42/", 'class="badge alert-severity '
                 'severity-critical"'):
        assert text in body, text
    rows = {row.label: row.value for row in response.context["evidence"]}
    assert rows["Overdue"] == "7" and rows["By week › before"] == "3.25"


@pytest.mark.parametrize(("action", "role", "expected"), [
    ("schedule_review", "reviewer", "/metrics/refund-replies/#review"),
    ("assign_owner", "owner", "/agents/refund-replies/edit/"),
    ("review_incidents", "reviewer", "/incidents/?agent=refund-replies&amp;status=unresolved"),
    ("review_backlog", "reviewer", "/reviews/?agent=refund-replies"),
])
def test_action_links_start_where_the_work_is_done(client, roles, action, role, expected):
    alert = make_alert(roles.agent, action=action, title="do something")
    client.force_login(getattr(roles, role))
    body = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert f'role="button" href="{expected}"' in body


def test_assign_owner_is_only_a_note_for_who_cannot_edit(client, roles):
    alert = make_alert(roles.agent, action="assign_owner")
    client.force_login(roles.reviewer)
    body = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "/agents/refund-replies/edit/" not in body
    assert "can change who owns it" in body


# --- acknowledge and resolve -----------------------------------------------------------------

def test_acknowledge_with_htmx_swaps_the_state_and_is_audited(client, roles):
    alert = make_alert(roles.agent, title="budget at 85%")
    client.force_login(roles.pauser)
    response = client.post(reverse("alerts:acknowledge", args=[alert.pk]),
                           {"note": "Talking to finance."}, headers=HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<article id="alert-state">') and "<html" not in body
    assert "The alert is acknowledged." in body and "Talking to finance." in body
    assert 'id="alert-status-badge" hx-swap-oob="true"' in body
    assert "ack-form" not in body and "resolve-form" in body  # only resolving is left
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by, alert.acknowledge_note) == (
        "acknowledged", roles.pauser, "Talking to finance.")
    event = AuditEvent.objects.get(verb="alert.acknowledged")
    assert event.actor_user == roles.pauser and event.data["note"] == "Talking to finance."
    history = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "alert.acknowledged" in history


def test_resolve_without_javascript_redirects_with_a_message(client, roles):
    alert = make_alert(roles.agent, status="acknowledged")
    client.force_login(roles.owner)
    response = client.post(reverse("alerts:resolve", args=[alert.pk]),
                           {"note": "Budget raised."}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("alerts:detail", args=[alert.pk])
    assert "The alert is resolved." in response.content.decode()
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolve_note) == (
        "resolved", roles.owner, "Budget raised.")
    assert AuditEvent.objects.filter(verb="alert.resolved", actor_user=roles.owner).exists()


def test_a_step_that_cannot_be_taken_says_why_and_changes_nothing(client, roles):
    alert = make_alert(roles.agent, status="resolved", resolved_at=timezone.now())
    client.force_login(roles.owner)
    response = client.post(reverse("alerts:acknowledge", args=[alert.pk]), {"note": "x"},
                           headers=HTMX)
    assert response.status_code == 400
    assert "nothing to acknowledge" in response.content.decode()
    long_note = client.post(reverse("alerts:resolve", args=[make_alert(roles.other).pk]),
                            {"note": "x"}, headers=HTMX)
    assert long_note.status_code == 404  # not the owner's agent
    other = make_alert(roles.agent, kind="budget")
    response = client.post(reverse("alerts:resolve", args=[other.pk]), {"note": "y" * 2001})
    assert response.status_code == 400
    assert "Ensure this value has at most 2000 characters" in response.content.decode()
    other.refresh_from_db()
    assert other.status == "open"
    assert not AuditEvent.objects.filter(verb__in=["alert.acknowledged",
                                                   "alert.resolved"]).exists()


def test_who_may_act_sees_the_forms_and_others_a_note(client, roles):
    alert = make_alert(roles.agent)
    fleet = make_alert(None, kind="rubber_stamping", subject="rita")
    client.force_login(roles.reviewer)
    body = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "ack-form" not in body and "owners, its pausers and admins" in body
    client.force_login(roles.owner)
    assert "ack-form" in client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "ack-form" not in client.get(
        reverse("alerts:detail", args=[fleet.pk])).content.decode()
    assert client.post(reverse("alerts:acknowledge", args=[fleet.pk])).status_code == 403
    client.force_login(roles.revops)
    assert "ack-form" in client.get(reverse("alerts:detail", args=[fleet.pk])).content.decode()


def test_the_page_offers_the_forms_by_the_services_rule(client, roles):
    """The page's `can_act` (computed from two queries) agrees with metrics.alerts."""
    alerts = [make_alert(roles.agent), make_alert(roles.other),
              make_alert(None, kind="rubber_stamping", subject="x")]
    for user in roles.all().values():
        client.force_login(user)
        for alert in alerts:
            response = client.get(reverse("alerts:detail", args=[alert.pk]))
            if response.status_code == 404:
                continue
            assert response.context["can_act"] == can_act_on_alert(user, alert), (
                user.username, alert.pk)


# --- actions ---------------------------------------------------------------------------------

def _at_level(agent, level):
    agent.autonomy_level = level
    agent.save(update_fields=["autonomy_level"])
    return agent


def test_lower_autonomy_opens_a_change_one_level_down_linked_to_the_alert(client, roles):
    _at_level(roles.agent, 3)
    alert = make_alert(roles.agent, kind="speed_quality", action="lower_autonomy",
                       title="Faster but worse", evidence={"accuracy_drop_pct": 11})
    client.force_login(roles.owner)
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "Request L2 for Refund replies" in page
    response = client.post(reverse("alerts:lower-autonomy", args=[alert.pk]))
    change = AutonomyChange.objects.get()
    assert response.status_code == 302
    assert response.url == f"/agents/refund-replies/#autonomy-change-{change.pk}"
    assert (change.from_level, change.to_level, change.status, change.requested_by) == (
        3, 2, "pending", roles.owner)
    assert change.evidence["attached"]["alert"]["evidence"] == {"accuracy_drop_pct": 11}
    alert.refresh_from_db()
    assert alert.autonomy_change == change
    assert AuditEvent.objects.filter(verb="alert.action_started",
                                     data__action="lower_autonomy").count() == 1
    # a second press finds the same change, and the page now links to it
    client.post(reverse("alerts:lower-autonomy", args=[alert.pk]))
    assert AutonomyChange.objects.count() == 1
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert f"#autonomy-change-{change.pk}" in page and "L3 → L2, pending" in page
    agent_page = client.get(response.url).content.decode()
    assert f'id="autonomy-change-{change.pk}"' in agent_page


def test_lower_autonomy_links_a_lowering_that_already_waits(client, roles):
    _at_level(roles.agent, 2)
    waiting = AutonomyChange.objects.create(agent=roles.agent, from_level=2, to_level=1,
                                            reason="Overrides doubled.")
    alert = make_alert(roles.agent, kind="override_spike", action="lower_autonomy")
    client.force_login(roles.owner)
    client.post(reverse("alerts:lower-autonomy", args=[alert.pk]))
    alert.refresh_from_db()
    assert alert.autonomy_change == waiting and AutonomyChange.objects.count() == 1


def test_lower_autonomy_at_l1_offers_nothing_and_refuses(client, roles):
    _at_level(roles.agent, 1)
    alert = make_alert(roles.agent, kind="speed_quality", action="lower_autonomy")
    client.force_login(roles.owner)
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "already at L1" in page and "lower-autonomy" not in page
    response = client.post(reverse("alerts:lower-autonomy", args=[alert.pk]), follow=True)
    assert "the lowest level" in response.content.decode()
    assert not AutonomyChange.objects.exists()


def test_admin_assigns_the_maintainer_of_an_orphan_source(client, roles):
    source = DataSourceFactory(slug="refund-policy", name="Refund policy")
    dana = UserFactory(username="dana-data")
    alert = make_alert(roles.agent, kind="stale_data", subject="refund-policy",
                       action="assign_maintainer", title="Refund policy has no maintainer")
    client.force_login(roles.owner)
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert "An admin names a source" in page and 'name="maintainer"' not in page
    client.force_login(roles.admin)
    page = client.get(reverse("alerts:detail", args=[alert.pk])).content.decode()
    assert 'name="maintainer"' in page and "maintainer now: nobody" in page
    bad = client.post(reverse("alerts:maintainer", args=[alert.pk]), {"maintainer": ""})
    assert bad.status_code == 400 and "Choose who maintains the source." in bad.content.decode()
    response = client.post(reverse("alerts:maintainer", args=[alert.pk]),
                           {"maintainer": dana.pk})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.maintainer == dana
    assert AuditEvent.objects.filter(verb="data_source.saved").exists()
    assert AuditEvent.objects.filter(verb="alert.action_started",
                                     data__maintainer="dana-data").exists()


# --- the dashboard and the agent page --------------------------------------------------------

def test_dashboard_shows_the_open_alerts_the_user_sees(client, roles):
    make_alert(roles.agent, title="refund budget", kind="budget", severity="critical")
    make_alert(roles.other, title="crm budget", kind="budget")
    make_alert(roles.agent, title="handled", kind="cost_drift", status="acknowledged")
    client.force_login(roles.owner)
    body = client.get(reverse("dashboard")).content.decode()
    assert "refund budget" in body and "crm budget" not in body and "handled" not in body
    assert response_stat(body) == "1"
    client.force_login(roles.viewer)
    body = client.get(reverse("dashboard")).content.decode()
    assert 'id="dashboard-alerts"' not in body and response_stat(body) == "0"


def test_the_dashboard_and_the_badge_count_once(client, roles):
    make_alert(roles.agent, kind="budget")
    client.force_login(roles.owner)
    client.get(reverse("dashboard"))
    with CaptureQueriesContext(connection) as page:
        body = client.get(reverse("dashboard")).content.decode()
    alert_queries = [q for q in page.captured_queries if "metrics_alert" in q["sql"]]
    assert len(alert_queries) == 2  # the count (shared with the badge) and the list
    assert 'title="Open alerts you can see">1</span>' in body


def response_stat(body: str) -> str:
    marker = 'stat-label">Open alert'
    head = body[:body.index(marker)]
    return head[head.rindex('<span class="stat-value">') + 25:].split("<", 1)[0]


def test_agent_page_lists_its_open_alerts(client, roles):
    make_alert(roles.agent, title="refund budget", kind="budget")
    make_alert(roles.agent, title="gone", kind="stale_data", status="resolved")
    make_alert(roles.other, title="crm budget", kind="budget")
    client.force_login(roles.reviewer)
    body = client.get(reverse("agents:detail", args=["refund-replies"])).content.decode()
    section = body[body.index('id="alerts"'):body.index('id="alerts"') + 3000]
    assert "refund budget" in section and "gone" not in section and "crm budget" not in body


# --- query counts ----------------------------------------------------------------------------

def test_alert_list_query_count_does_not_grow_with_alerts(client, roles,
                                                          django_assert_num_queries):
    client.force_login(roles.reviewer)
    for n in range(3):
        make_alert(roles.agent, subject=f"a{n}", acknowledged_by=roles.owner,
                   status="acknowledged")
    client.get(reverse("alerts:list"))  # the first view after login refreshes the session
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("alerts:list"))
    for n in range(30):
        agent = make_agent(slug=f"bulk-{n}")
        assign_perm("agents.view_agent", roles.reviewer, agent)
        make_alert(agent, subject=f"b{n}", acknowledged_by=roles.owner, status="acknowledged")
        make_alert(None, subject=f"c{n}", kind="rubber_stamping")
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get(reverse("alerts:list"))
    assert len(response.context["page"]) == 50


def test_alert_list_pins_its_query_count(client, roles, django_assert_num_queries):
    make_alert(roles.agent)
    client.force_login(roles.admin)
    client.get(reverse("alerts:list"))  # warm the ContentType cache and the session
    # session, user, perms ×2, agent filter choices, count, alerts, nav groups,
    # nav waiting badge ×2, nav alert badge
    with django_assert_num_queries(11):
        client.get(reverse("alerts:list"))


def test_alert_page_pins_its_query_count(client, roles, django_assert_num_queries):
    alert = make_alert(roles.agent, action="review_backlog")
    client.force_login(roles.owner)
    client.get(reverse("alerts:detail", args=[alert.pk]))
    # session, user, perms ×2, the alert, object perms ×2 (user, groups), history,
    # nav groups, nav waiting badge ×2, nav alert badge
    with django_assert_num_queries(12):
        client.get(reverse("alerts:detail", args=[alert.pk]))


# --- the demo --------------------------------------------------------------------------------

def test_the_demo_raises_several_kinds_of_alert_on_the_first_run(client, settings):
    settings.DEBUG = True  # seed_demo hands out public passwords only then
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    kinds = set(Alert.objects.filter(status="open").values_list("kind", flat=True))
    assert {"speed_quality", "adoption_low", "stale_data", "decisions_unreviewed",
            "review_backlog"} <= kinds
    assert "warning signs found" in out.getvalue()
    backlog = Alert.objects.get(kind="review_backlog")
    assert backlog.agent.slug == "refund-replies" and backlog.evidence["overdue"] == 1
    # a second run finds the same signs: the same alerts, refreshed, none added
    before = dict(Alert.objects.values_list("dedupe_key", "status"))
    call_command("seed_demo", stdout=io.StringIO())
    assert dict(Alert.objects.values_list("dedupe_key", "status")) == before
    # and each alert's page reads: rachel (RevOps) sees them all
    client.force_login(User.objects.get(username="rachel"))
    for alert in Alert.objects.all():
        response = client.get(reverse("alerts:detail", args=[alert.pk]))
        assert response.status_code == 200, alert.kind
        assert response.context["evidence"], alert.kind
    orphan = Alert.objects.get(kind="stale_data", agent__slug="refund-replies")
    client.force_login(User.objects.get(username="admin"))
    page = client.get(reverse("alerts:detail", args=[orphan.pk])).content.decode()
    assert "Source: <strong>Refund policy</strong>" in page
