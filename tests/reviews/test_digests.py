"""Telling reviewers: who may decide which pending item, the hourly e-mail digest, and the
dashboard's "waiting for you" counts."""

import re
from datetime import timedelta
from itertools import count

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from portal.models import AuditEvent
from reviews import digests, tasks
from reviews.digests import pending_for_user, reviewer_digests_send
from reviews.incidents import incident_report
from reviews.models import ActionRequest, ReviewerDigest
from reviews.services import can_review
from tests.factories import SystemFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0)
_numbers = count(1)


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.STEWARD_BASE_URL = "https://steward.example.com"


def _pending(agent, **fields) -> ActionRequest:
    n = next(_numbers)
    fields = {"system": SystemFactory(slug="crm", name="CRM"), "operation": "update_deal",
              "kind": "execute", "summary": f"Close deal {n}", "decision": "review",
              "status": "pending", "policy_version": 1, "proposal_sha256": "0" * 64,
              "created_at": T0, "due_at": T0 + timedelta(hours=24), **fields}
    return ActionRequest.objects.create(agent=agent, **fields)


@pytest.fixture
def managers(roles):
    """Managers decide what is routed to them; maria is one, without any agent permission."""
    group = Group.objects.create(name="Managers")
    maria = UserFactory(username="maria")
    maria.groups.add(group)
    return group, maria


def _send(now=T0, capture=None) -> list[str]:
    with capture(execute=True):
        return reviewer_digests_send(now=now)


# --- who may decide what ---------------------------------------------------------------------

def test_pending_for_user_follows_who_may_decide(roles, managers):
    group, maria = managers
    mine = _pending(roles.agent)
    theirs = _pending(roles.other)
    routed = _pending(roles.agent, route_to_group=group)
    _pending(roles.agent, status="approved", decision="allow")
    boss = UserFactory(username="sue-superuser", is_superuser=True)
    team = Group.objects.create(name="Support reviewers")
    assign_perm("agents.review_agent", team, roles.agent)
    member = UserFactory(username="tom-team")
    member.groups.add(team)

    def ids(user):
        return set(pending_for_user(user=user).values_list("id", flat=True))

    assert ids(roles.reviewer) == {mine.pk}
    assert ids(roles.other_reviewer) == {theirs.pk}
    assert ids(roles.admin) == {mine.pk, theirs.pk}  # not routed: Admins are not Managers
    assert ids(maria) == {routed.pk}
    assert ids(member) == {mine.pk}
    assert ids(boss) == {mine.pk, theirs.pk, routed.pk}
    for role in ("owner", "revops", "pauser", "viewer"):
        assert ids(getattr(roles, role)) == set(), role
    roles.reviewer.is_active = False
    assert ids(roles.reviewer) == set()


def test_pending_for_user_agrees_with_can_review_everywhere(roles, managers):
    group, maria = managers
    items = [_pending(roles.agent), _pending(roles.other),
             _pending(roles.agent, route_to_group=group),
             _pending(roles.other, route_to_group=group)]
    for user in [*roles.all().values(), maria]:
        decidable = set(pending_for_user(user=user).values_list("id", flat=True))
        fresh = type(user).objects.get(pk=user.pk)  # no permission cache from the query above
        assert decidable == {item.pk for item in items if can_review(fresh, item)}, user


def test_pending_for_user_is_oldest_due_first(roles):
    late = _pending(roles.agent, due_at=T0 + timedelta(hours=5))
    soon = _pending(roles.agent, due_at=T0 + timedelta(hours=1))
    assert list(pending_for_user(user=roles.reviewer)) == [soon, late]


def test_pending_for_user_costs_the_same_for_3_or_30_items(roles, managers):
    group, maria = managers

    def queries() -> int:
        user = type(roles.reviewer).objects.get(pk=roles.reviewer.pk)
        with CaptureQueriesContext(connection) as captured:
            list(pending_for_user(user=user))
        return len(captured.captured_queries)

    for _ in range(3):
        _pending(roles.agent)
    few = queries()
    for n in range(27):
        _pending(roles.agent, route_to_group=group if n % 3 else None)
    assert queries() == few <= 3  # the user's permissions (2), then one query


# --- the digest ------------------------------------------------------------------------------

def test_each_reviewer_gets_one_digest_with_their_items_and_links(
        roles, django_capture_on_commit_callbacks):
    first = _pending(roles.agent, summary="Refund 650 USD on ticket 88",
                     due_at=T0 - timedelta(hours=1))
    _pending(roles.other, summary="Merge Acme Ltd into Acme")
    sent = _send(capture=django_capture_on_commit_callbacks)
    assert sorted(sent) == ["ada-admin", "rita-reviewer", "rudi-reviewer"]
    by_person = {message.to[0]: message for message in mail.outbox}
    assert len(mail.outbox) == 3
    rita = by_person[roles.reviewer.email]
    assert rita.subject == "[Steward] 1 item waits for your review"
    assert "Refund replies: Refund 650 USD on ticket 88" in rita.body
    assert "(overdue)" in rita.body and "Merge Acme" not in rita.body
    assert f"https://steward.example.com/reviews/{first.public_id}/" in rita.body
    assert "Your inbox: https://steward.example.com/reviews/" in rita.body
    assert by_person[roles.admin.email].subject == "[Steward] 2 items wait for your review"
    digest = ReviewerDigest.objects.get(user=roles.reviewer)
    assert digest.last_sent_at == T0 and digest.last_item_id == first.pk
    assert AuditEvent.objects.filter(verb="reviewer.digest_sent").count() == 3


def test_at_most_one_digest_an_hour(roles, django_capture_on_commit_callbacks):
    _pending(roles.agent)
    assert "rita-reviewer" in _send(capture=django_capture_on_commit_callbacks)
    _pending(roles.agent)
    assert _send(T0, capture=django_capture_on_commit_callbacks) == []
    assert _send(T0 + timedelta(minutes=59), capture=django_capture_on_commit_callbacks) == []
    sent = _send(T0 + timedelta(minutes=60), capture=django_capture_on_commit_callbacks)
    assert "rita-reviewer" in sent
    rita = [m for m in mail.outbox if m.to == [roles.reviewer.email]]
    assert len(rita) == 2 and "[new] Refund replies" in rita[1].body


def test_no_digest_when_nothing_new_waits(roles, django_capture_on_commit_callbacks):
    old = _pending(roles.agent)
    _send(capture=django_capture_on_commit_callbacks)
    mail.outbox.clear()
    assert _send(T0 + timedelta(hours=3), capture=django_capture_on_commit_callbacks) == []
    # A new item that was decided before the run is not news either.
    _pending(roles.agent, status="rejected")
    assert _send(T0 + timedelta(hours=4), capture=django_capture_on_commit_callbacks) == []
    assert mail.outbox == []
    # Once something new waits, the digest lists everything that waits, old and new.
    new = _pending(roles.agent)
    _send(T0 + timedelta(hours=5), capture=django_capture_on_commit_callbacks)
    [rita] = [m for m in mail.outbox if m.to == [roles.reviewer.email]]
    assert old.summary in rita.body and f"[new] Refund replies: {new.summary}" in rita.body


def test_nobody_without_something_to_decide_is_mailed(roles, django_capture_on_commit_callbacks):
    assert _send(capture=django_capture_on_commit_callbacks) == []
    _pending(roles.agent, status="approved", decision="allow")
    assert _send(capture=django_capture_on_commit_callbacks) == []
    assert mail.outbox == []


def test_inactive_people_and_people_without_an_address_get_none(
        roles, django_capture_on_commit_callbacks):
    _pending(roles.agent)
    roles.reviewer.email = ""
    roles.reviewer.save()
    roles.admin.is_active = False
    roles.admin.save()
    assert _send(capture=django_capture_on_commit_callbacks) == []


def test_routed_items_are_told_to_the_groups_members(roles, managers,
                                                     django_capture_on_commit_callbacks):
    group, maria = managers
    _pending(roles.agent, route_to_group=group, summary="Refund 900 USD")
    assert _send(capture=django_capture_on_commit_callbacks) == ["maria"]
    [message] = mail.outbox
    assert message.to == [maria.email] and "Refund 900 USD" in message.body


def test_a_long_digest_lists_the_first_items_and_counts_the_rest(
        roles, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(digests, "DIGEST_MAX_ITEMS", 2)
    for hours in (3, 1, 2, 4):
        _pending(roles.agent, due_at=T0 + timedelta(hours=hours), summary=f"Due in {hours}h")
    _send(capture=django_capture_on_commit_callbacks)
    [rita] = [m for m in mail.outbox if m.to == [roles.reviewer.email]]
    assert rita.subject == "[Steward] 4 items wait for your review"
    assert "Due in 1h" in rita.body and "Due in 2h" in rita.body and "Due in 3h" not in rita.body
    assert "… and 2 more." in rita.body


def test_the_digest_costs_the_same_for_3_or_60_items(roles, managers,
                                                     django_capture_on_commit_callbacks):
    group, maria = managers

    def queries(now) -> int:
        with CaptureQueriesContext(connection) as captured:
            _send(now, capture=django_capture_on_commit_callbacks)
        return len(captured.captured_queries)

    def one_of_each() -> None:
        for agent in (roles.agent, roles.other):
            _pending(agent)
        _pending(roles.agent, route_to_group=group)

    one_of_each()
    queries(T0)  # the first run creates each person's ReviewerDigest row
    one_of_each()
    few = queries(T0 + timedelta(hours=1))
    for n in range(60):
        _pending(roles.agent if n % 2 else roles.other,
                 route_to_group=group if n % 5 == 0 else None)
    one_of_each()
    assert queries(T0 + timedelta(hours=2)) == few
    assert len(mail.outbox) == 3 * 4  # admin, both reviewers and maria, each run


def test_beat_sends_the_digest(roles, django_capture_on_commit_callbacks):
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values()
                 if e["task"] == "reviews.tasks.reviewer_digests_send")
    assert entry["schedule"] <= 3600
    _pending(roles.agent)
    with django_capture_on_commit_callbacks(execute=True):
        assert "rita-reviewer" in tasks.reviewer_digests_send()


# --- the dashboard ---------------------------------------------------------------------------

def _stat(page: str, label: str) -> str:
    match = re.search(r'<span class="stat-value">([^<]*)</span>\s*'
                      r'<span class="stat-label">' + label, page)
    assert match, label
    return match.group(1)


def test_dashboard_shows_what_waits_for_each_user(client, roles, managers):
    group, maria = managers
    _pending(roles.agent)
    _pending(roles.agent)
    _pending(roles.other)
    _pending(roles.agent, route_to_group=group)
    incident_report(actor=roles.reviewer, agent=roles.agent, category="tone", severity="low",
                    description="Curt.")
    expected = {"reviewer": ("2", "0"), "other_reviewer": ("1", "0"), "admin": ("3", "1"),
                "owner": ("0", "1"), "revops": ("0", "0"), "viewer": ("0", "0")}
    for role, (reviews, incidents) in expected.items():
        client.force_login(getattr(roles, role))
        page = client.get(reverse("dashboard")).content.decode()
        assert _stat(page, "Review item") == reviews, role
        assert _stat(page, "Open incident") == incidents, role
    client.force_login(maria)
    assert _stat(client.get(reverse("dashboard")).content.decode(), "Review item") == "1"


def test_dashboard_says_99_plus_rather_than_counting_everything(client, roles):
    template = _pending(roles.agent)
    ActionRequest.objects.bulk_create([
        ActionRequest(agent=roles.agent, system=template.system, operation="x", kind="execute",
                      decision="review", status="pending", policy_version=1,
                      proposal_sha256="0" * 64, created_at=T0) for _ in range(120)])
    client.force_login(roles.reviewer)
    page = client.get(reverse("dashboard")).content.decode()
    assert _stat(page, "Review items") == "99+"
