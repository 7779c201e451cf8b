"""The review inbox: who sees which items, tabs, filters, keyset pages, polling, the badge,
its query count, and the decisions taken from a row (htmx and plain)."""

import itertools
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from guardian.shortcuts import assign_perm

from agents import services as agent_services
from agents.models import DataSource
from reviews import selectors
from reviews.models import ActionRequest
from tests.factories import DataSourceFactory, SystemFactory, UserFactory, make_agent

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
_numbers = itertools.count(1)


def pending_action(agent, *, due_in=timedelta(hours=24), created_ago=timedelta(minutes=5),
                   **fields) -> ActionRequest:
    """A request as the gate stores one it sends to review (written straight to the table)."""
    now = timezone.now()
    n = next(_numbers)
    values = {
        "agent": agent, "created_at": now - created_ago,
        "system": SystemFactory(slug="crm", name="CRM"), "operation": "update_deal",
        "kind": "execute", "target": f"deal {n}", "summary": f"Move deal {n} to negotiation",
        "changes": {"stage": "negotiation"}, "confidence": 0.82,
        "decision": "review", "status": "pending", "policy_version": 1,
        "proposal_sha256": "0" * 64, "due_at": now + due_in,
        "reasons": [{"code": "guardrail", "message": "Stage changes need approval"}],
    }
    values.update(fields)
    return ActionRequest.objects.create(**values)


def row_ids(html: str) -> list[str]:
    return re.findall(r'id="item-([0-9a-f-]{36})"', html)


def inbox(client, **params) -> str:
    response = client.get(reverse("reviews:inbox"), params)
    assert response.status_code == 200
    return response.content.decode()


# --- who sees what ---------------------------------------------------------------------------

def test_each_role_sees_the_items_of_the_agents_it_reviews(client, roles):
    mine = pending_action(roles.agent, summary="Refund 40 EUR to Ann")
    theirs = pending_action(roles.other, summary="Merge duplicate contact")
    expected = {"reviewer": {mine}, "other_reviewer": {theirs}, "admin": {mine, theirs},
                "viewer": set(), "owner": set(), "pauser": set(), "revops": set()}
    for role, items in expected.items():
        client.force_login(getattr(roles, role))
        page = inbox(client)
        assert set(row_ids(page)) == {str(i.public_id) for i in items}, role
        if not items:
            assert "Nothing waits for you" in page


def test_routed_items_are_only_for_the_groups_members(client, roles):
    managers = Group.objects.create(name="Managers")
    routed = pending_action(roles.agent, summary="Refund 900 EUR", route_to_group=managers)
    plain = pending_action(roles.agent, summary="Refund 40 EUR")
    manager = UserFactory(username="mia-manager")
    manager.groups.add(managers)

    client.force_login(roles.reviewer)  # reviews the agent, not a manager
    assert row_ids(inbox(client)) == [str(plain.public_id)]
    client.force_login(roles.admin)  # review_agent model-wide, still not a manager
    assert str(routed.public_id) not in row_ids(inbox(client))
    client.force_login(manager)  # a manager, not a reviewer of the agent
    page = inbox(client)
    assert row_ids(page) == [str(routed.public_id)]
    assert "for Managers" in page
    # The member may open and decide it though the agent is not otherwise theirs.
    assert client.get(reverse("reviews:item", args=[routed.public_id])).status_code == 200

    roles.reviewer.groups.add(managers)
    client.force_login(roles.reviewer)
    assert set(row_ids(inbox(client))) == {str(routed.public_id), str(plain.public_id)}


def test_group_object_permission_makes_a_reviewer(client, roles):
    team = Group.objects.create(name="Support leads")
    assign_perm("agents.review_agent", team, roles.other)
    lead = UserFactory(username="lena-lead")
    lead.groups.add(team)
    item = pending_action(roles.other)
    client.force_login(lead)
    assert row_ids(inbox(client)) == [str(item.public_id)]


def test_inactive_user_sees_nothing(roles):
    pending_action(roles.agent)
    roles.reviewer.is_active = False
    assert selectors.waiting_count(user=roles.reviewer) == 0


# --- tabs, order, filters --------------------------------------------------------------------

def test_waiting_is_pending_items_oldest_due_first_with_overdue_marked(client, roles):
    later = pending_action(roles.agent, due_in=timedelta(hours=20))
    overdue = pending_action(roles.agent, due_in=-timedelta(hours=2))
    sooner = pending_action(roles.agent, due_in=timedelta(hours=1))
    pending_action(roles.agent, status="approved", decision="review")
    pending_action(roles.agent, status="blocked", decision="block", due_at=None)
    client.force_login(roles.reviewer)
    page = inbox(client)
    assert row_ids(page) == [str(i.public_id) for i in (overdue, sooner, later)]
    overdue_row = page[page.index(f'id="item-{overdue.public_id}"') - 40:]
    assert 'class="inbox-row overdue"' in overdue_row[:80]
    assert page.count("overdue</span>") == 1


def test_sampled_tab_lists_allowed_actions_waiting_for_a_check(client, roles):
    unchecked = pending_action(roles.agent, status="approved", decision="allow", sampled=True,
                               reasons=[])
    pending_action(roles.agent, status="executed", decision="allow", sampled=True,
                   sample_verdict="looks_right")
    pending_action(roles.agent, status="approved", decision="allow", sampled=False)
    pending_action(roles.other, status="approved", decision="allow", sampled=True)
    client.force_login(roles.reviewer)
    page = inbox(client, tab="sampled")
    assert row_ids(page) == [str(unchecked.public_id)]
    assert "Looks right" in page and "Approve</button>" not in page


def test_decided_tab_is_the_history_newest_first(client, roles):
    now = timezone.now()
    first = pending_action(roles.agent, status="approved", reviewed_by=roles.reviewer,
                           reviewed_at=now - timedelta(hours=3))
    second = pending_action(roles.agent, status="rejected", reviewed_by=roles.admin,
                            reviewed_at=now - timedelta(hours=1), review_note="Wrong deal")
    pending_action(roles.agent)  # still pending
    client.force_login(roles.reviewer)
    page = inbox(client, tab="decided")
    assert row_ids(page) == [str(second.public_id), str(first.public_id)]
    rows = page.split('id="inbox-list"')[1].split("</ol>")[0]
    assert "Wrong deal" in rows and "<form" not in rows


def test_filters_by_agent_system_reason_and_age(client, roles):
    client.force_login(roles.admin)
    helpdesk = SystemFactory(slug="helpdesk", name="Helpdesk")
    a = pending_action(roles.agent, created_ago=timedelta(days=8))
    b = pending_action(roles.other, system=helpdesk, created_ago=timedelta(hours=2),
                       reasons=[{"code": "confidence_review", "message": "Confidence 0.5"},
                                {"code": "source_stale", "message": "Stale"}])
    c = pending_action(roles.other, reasons=[{"code": "autonomy", "message": "L1"}])
    assert set(row_ids(inbox(client, agent="crm-hygiene"))) == {str(b.public_id),
                                                                str(c.public_id)}
    assert row_ids(inbox(client, system="helpdesk")) == [str(b.public_id)]
    assert row_ids(inbox(client, reason="source_stale")) == [str(b.public_id)]
    assert row_ids(inbox(client, reason="guardrail")) == [str(a.public_id)]
    assert row_ids(inbox(client, age="1h")) == [str(a.public_id), str(b.public_id)]
    assert row_ids(inbox(client, age="7d")) == [str(a.public_id)]
    assert row_ids(inbox(client, agent="crm-hygiene", reason="autonomy")) == [str(c.public_id)]
    page = inbox(client, agent="refund-replies", age="24h", reason="budget")
    assert row_ids(page) == [] and "Nothing matches these filters" in page
    # Nonsense values filter nothing away rather than failing.
    assert len(row_ids(inbox(client, reason="nope", age="1y", tab="x"))) == 3


def test_agent_filter_offers_the_agents_the_user_reviews(client, roles):
    client.force_login(roles.reviewer)
    page = inbox(client)
    assert '<option value="refund-replies">' in page
    assert "crm-hygiene" not in page


def test_rows_show_what_why_confidence_sources_and_claims(client, roles):
    stale = DataSourceFactory(slug="crm-accounts", name="CRM accounts", max_age=timedelta(days=1),
                              refreshed_at=timezone.now() - timedelta(days=3))
    DataSourceFactory(slug="ticket-history", name="Ticket history")
    DataSourceFactory(slug="rumours", name="Rumours", approved=False)
    pending_action(roles.agent, summary="Refund 640 EUR to Ann", amount="640", currency="EUR",
                   target="ticket 4411", confidence=0.64,
                   sources=["crm-accounts", "ticket-history", "rumours"],
                   claimed_by=roles.admin, claimed_at=timezone.now(),
                   reasons=[{"code": "guardrail", "message": "Refunds over 500"},
                            {"code": "confidence_review", "message": "Under 0.7"}])
    client.force_login(roles.reviewer)
    page = inbox(client)
    for text in ("Refund replies", "L1", "status-proposed", "Refund 640 EUR to Ann",
                 "<code>update_deal</code> in CRM", "ticket 4411", "640.00 EUR",
                 '>guardrail</span>', '>confidence_review</span>', "<strong>0.64</strong>",
                 "CRM accounts: stale", "Ticket history</span>", "Rumours: not approved",
                 f"claimed by {roles.admin}"):
        assert text in page, text
    assert stale.is_stale()


def test_paused_agents_items_offer_no_approve(client, roles):
    agent_services.agent_pause(actor=None, agent=roles.agent, reason="Quoting old prices")
    pending_action(roles.agent)
    client.force_login(roles.reviewer)
    page = inbox(client)
    assert "paused: cannot be approved" in page
    assert 'data-key="approve"' not in page and "Reject…" in page


# --- pages -----------------------------------------------------------------------------------

def _many(agent, count, *, same_due=False):
    now = timezone.now()
    system = SystemFactory(slug="crm", name="CRM")
    ActionRequest.objects.bulk_create([ActionRequest(
        agent=agent, created_at=now, system=system, operation="update_deal", kind="execute",
        summary=f"Bulk {n}", decision="review", status="pending", policy_version=1,
        proposal_sha256="0" * 64,
        due_at=now + (timedelta(hours=1) if same_due and n % 3 else timedelta(minutes=n)))
        for n in range(count)])


def test_keyset_pages_continue_without_duplicates_or_gaps(client, roles):
    _many(roles.agent, 123, same_due=True)  # ties on due_at: the id breaks them
    client.force_login(roles.reviewer)
    seen, params, pages = [], {}, 0
    while True:
        response = client.get(reverse("reviews:inbox"), params)
        page = response.content.decode()
        ids = row_ids(page)
        seen += ids
        pages += 1
        match = re.search(r'href="\?after=([^"]+)"', page)
        if not match:
            break
        assert len(ids) == 50 and "50+ more" in page
        params = {"after": match.group(1).replace("%2C", ",").replace("%3A", ":")}
    assert pages == 3 and len(seen) == 123 and len(set(seen)) == 123
    expected = ActionRequest.objects.order_by("due_at", "id").values_list("public_id", flat=True)
    assert seen == [str(pk) for pk in expected]


def test_keyset_page_keeps_filters_and_tolerates_a_bad_cursor(client, roles):
    _many(roles.agent, 60)
    client.force_login(roles.reviewer)
    page = inbox(client, agent="refund-replies")
    assert 'href="?agent=refund-replies&amp;after=' in page
    assert len(row_ids(inbox(client, after="garbage"))) == 50
    assert len(row_ids(inbox(client, after="2020-01-01T00:00:00Z,x"))) == 50


def test_decided_tab_pages_in_order(roles, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    now = timezone.now()
    for n in range(7):
        pending_action(roles.agent, status="approved", reviewed_by=roles.reviewer,
                       reviewed_at=now - timedelta(minutes=n % 3))
    filters = selectors.InboxFilters(tab="decided")
    seen, after = [], ""
    for _ in range(10):
        page = selectors.inbox_page(user=roles.reviewer, filters=filters, after=after)
        seen += page.records
        after = page.next_after
        if not after:
            break
    assert [r.id for r in seen] == list(ActionRequest.objects.order_by(
        "-reviewed_at", "-id").values_list("pk", flat=True))


# --- htmx: fragments and polling -------------------------------------------------------------

def test_htmx_filter_returns_only_the_list(client, roles):
    pending_action(roles.agent)
    client.force_login(roles.reviewer)
    body = client.get(reverse("reviews:inbox"), {"reason": "guardrail"},
                      headers=HTMX).content.decode()
    assert body.lstrip().startswith('<section id="inbox-list"') and "<html" not in body
    assert len(row_ids(body)) == 1


def test_polling_tells_of_new_items_without_reloading_the_list(client, roles):
    pending_action(roles.agent)
    client.force_login(roles.reviewer)
    page = inbox(client)
    poll = re.search(r'hx-get="(/reviews/\?since=[^"]+)" hx-trigger="every 15s"', page)
    assert poll
    url = poll.group(1).replace("&amp;", "&")
    quiet = client.get(url, headers=HTMX).content.decode()
    assert quiet.lstrip().startswith('<div id="new-items"') and "new item" not in quiet
    pending_action(roles.agent, created_ago=timedelta(0))
    pending_action(roles.agent, created_ago=timedelta(0))
    pending_action(roles.other, created_ago=timedelta(0))  # not the reviewer's
    news = client.get(url, headers=HTMX).content.decode()
    assert "2 new items arrived" in news
    assert 'hx-target="#inbox-list"' in news and row_ids(news) == []


def test_navigation_badge_counts_what_waits_up_to_99(client, roles):
    client.force_login(roles.reviewer)
    assert "nav-count" not in client.get(reverse("dashboard")).content.decode()
    pending_action(roles.agent)
    pending_action(roles.other)
    assert re.search(r'nav-count"[^>]*>1</span>', inbox(client))
    _many(roles.agent, 120)
    assert re.search(r'nav-count"[^>]*>99\+</span>',
                     client.get(reverse("agents:list")).content.decode())
    client.force_login(roles.viewer)
    assert "nav-count" not in client.get(reverse("dashboard")).content.decode()


# --- query count -----------------------------------------------------------------------------

def _sources_for(count):
    return [DataSourceFactory(slug=f"src-{n}", max_age=timedelta(days=1),
                              refreshed_at=timezone.now()).slug for n in range(count)]


def test_inbox_query_count_does_not_grow_with_items(client, roles):
    slugs = _sources_for(4)
    claimer = UserFactory(username="cora-claimer")
    for _n in range(3):
        pending_action(roles.agent, sources=slugs[:2], claimed_by=claimer,
                       claimed_at=timezone.now())
    client.force_login(roles.reviewer)
    client.get(reverse("reviews:inbox"))  # warm the ContentType cache
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("reviews:inbox"))
    for n in range(60):
        agent = make_agent(slug=f"bulk-{n}") if n % 20 == 0 else roles.agent
        assign_perm("agents.review_agent", roles.reviewer, agent)
        pending_action(agent, sources=slugs[n % 4:], claimed_by=UserFactory(),
                       claimed_at=timezone.now(), system=SystemFactory(slug=f"sys-{n % 5}"))
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("reviews:inbox"))
    assert len(row_ids(response.content.decode())) == 50
    assert len(many.captured_queries) == len(few.captured_queries), "\n".join(
        q["sql"][:160] for q in many.captured_queries)


@pytest.mark.postgres  # the plain-SQL path; the ORM path (SQLite) takes a few more
def test_inbox_pins_its_query_count(client, roles, django_assert_num_queries):
    pending_action(roles.agent, sources=_sources_for(2))
    client.force_login(roles.reviewer)
    client.get(reverse("reviews:inbox"))  # warm the ContentType cache
    # session, user, review scope (one query), rows, their sources, filter choices (agents
    # and systems, one query), navigation (groups, badge count, alert badge); no session
    # save (it is refreshed at most once a minute)
    with django_assert_num_queries(9):
        client.get(reverse("reviews:inbox"))
    # an htmx filter change: no badge, no filter choices
    with django_assert_num_queries(6):
        client.get(reverse("reviews:inbox"), {"reason": "guardrail"}, headers=HTMX)
    # the last page after a keyset step also looks for rows without a due time
    with django_assert_num_queries(7):
        client.get(reverse("reviews:inbox"), {"after": "2000-01-01T00:00:00Z,1"},
                   headers=HTMX)


# --- decisions from a row --------------------------------------------------------------------

def _post_from_row(client, item, verb, data=None, *, htmx=True, page="/reviews/"):
    """POST as a row's form does: htmx names the row as target and the page it is on."""
    headers = ({**HTMX, "HX-Target": f"item-{item.public_id}",
                "HX-Current-URL": f"http://testserver{page}"} if htmx
               else {"Referer": f"http://testserver{page}"})
    return client.post(reverse(f"reviews:{verb}", args=[item.public_id]), data or {},
                       headers=headers)


def test_htmx_approve_swaps_the_row_out_and_confirms(client, roles):
    item = pending_action(roles.agent, summary="Refund 40 EUR to Ann")
    client.force_login(roles.reviewer)
    response = _post_from_row(client, item, "approve")
    body = response.content.decode()
    assert response.status_code == 200
    assert row_ids(body) == []  # the row is replaced by nothing
    assert 'id="review-flash"' in body and 'hx-swap-oob="true"' in body
    assert "Approved: Refund 40 EUR to Ann (Refund replies)." in body
    item.refresh_from_db()
    assert (item.status, item.reviewed_by) == ("approved", roles.reviewer)


def test_htmx_reject_needs_a_reason_and_changes_nothing_without_one(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    body = _post_from_row(client, item, "reject", {"note": "  "}).content.decode()
    assert row_ids(body) == [str(item.public_id)]  # the row stays, with the error
    assert "Say why you reject it" in body and 'class="reject" open' in body
    assert "flash-error" in body
    item.refresh_from_db()
    assert item.status == "pending"
    body = _post_from_row(client, item, "reject", {"note": "Wrong deal"}).content.decode()
    assert row_ids(body) == [] and "Rejected:" in body
    item.refresh_from_db()
    assert (item.status, item.review_note) == ("rejected", "Wrong deal")


def test_htmx_approve_of_a_paused_agents_item_says_why(client, roles):
    item = pending_action(roles.agent)
    agent_services.agent_pause(actor=None, agent=roles.agent, reason="Quoting old prices")
    client.force_login(roles.reviewer)
    body = _post_from_row(client, item, "approve").content.decode()
    assert row_ids(body) == [str(item.public_id)]
    assert "is paused (Quoting old prices)" in body
    item.refresh_from_db()
    assert item.status == "pending"


def test_htmx_claim_re_renders_the_row(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    body = _post_from_row(client, item, "claim").content.decode()
    assert row_ids(body) == [str(item.public_id)]
    assert "claimed by you" in body and "Unclaim</button>" in body
    item.refresh_from_db()
    assert item.claimed_by == roles.reviewer
    body = _post_from_row(client, item, "unclaim").content.decode()
    assert "Claim</button>" in body
    item.refresh_from_db()
    assert item.claimed_by is None


def test_htmx_looks_right_from_the_sampled_tab(client, roles):
    item = pending_action(roles.agent, status="approved", decision="allow", sampled=True)
    client.force_login(roles.reviewer)
    body = _post_from_row(client, item, "looks-right", page="/reviews/?tab=sampled")
    assert row_ids(body.content.decode()) == []
    item.refresh_from_db()
    assert (item.sample_verdict, item.sample_checked_by) == ("looks_right", roles.reviewer)


def test_plain_post_redirects_back_with_a_flash_message(client, roles):
    item = pending_action(roles.agent, summary="Refund 40 EUR to Ann")
    client.force_login(roles.reviewer)
    response = _post_from_row(client, item, "approve", htmx=False,
                              page="/reviews/?reason=guardrail")
    assert response.status_code == 302
    assert response.url == "http://testserver/reviews/?reason=guardrail"
    page = client.get(response.url).content.decode()
    assert "Approved: Refund 40 EUR to Ann" in page and row_ids(page) == []


def test_plain_post_refusal_is_a_flash_error_and_changes_nothing(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    response = _post_from_row(client, item, "reject", {"note": ""}, htmx=False)
    page = client.get(response.url).content.decode()
    assert "flash-error" in page and "Say why you reject it" in page
    item.refresh_from_db()
    assert item.status == "pending"


def test_plain_post_goes_back_only_to_this_site(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    response = client.post(reverse("reviews:claim", args=[item.public_id]),
                           headers={"Referer": "https://evil.example/reviews/"})
    assert response.url == reverse("reviews:item", args=[item.public_id])
    response = client.post(reverse("reviews:unclaim", args=[item.public_id]))
    assert response.url == reverse("reviews:item", args=[item.public_id])


def test_decisions_answer_403_to_viewers_of_the_agent_and_404_to_others(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.owner)  # sees the agent, does not review it
    assert _post_from_row(client, item, "approve").status_code == 403
    client.force_login(roles.other_reviewer)  # does not see it at all
    assert _post_from_row(client, item, "approve").status_code == 404
    assert client.get(reverse("reviews:approve", args=[item.public_id])).status_code == 405
    item.refresh_from_db()
    assert item.status == "pending"


def test_rows_link_to_the_decision_urls(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    page = inbox(client)
    for name in ("approve", "reject", "claim"):
        assert f'action="{reverse(f"reviews:{name}", args=[item.public_id])}"' in page
    assert f'href="{reverse("reviews:item", args=[item.public_id])}?edit=1#edit"' in page


def test_inbox_and_item_use_no_inline_script(client, roles):
    item = pending_action(roles.agent)
    client.force_login(roles.reviewer)
    for url in (reverse("reviews:inbox"), reverse("reviews:item", args=[item.public_id])):
        page = client.get(url).content.decode()
        scripts = re.findall(r"<script[^>]*>", page)
        assert scripts and all("src=" in tag for tag in scripts), scripts
        assert "js/inbox.js" in page
        assert not re.search(r"\son[a-z]+=", page)  # no onclick= and friends
        assert "hx-on" not in page and "js:" not in page


def test_unknown_source_in_a_row(client, roles):
    pending_action(roles.agent, sources=["gone"])
    client.force_login(roles.reviewer)
    assert "gone: unknown" in inbox(client)
    assert not DataSource.objects.filter(slug="gone").exists()


# --- the plain-SQL path (PostgreSQL) against the ORM path ------------------------------------

def _normalised(records):
    return [r._replace(sources=selectors._json(r.sources), reasons=selectors._json(r.reasons))
            for r in records]


@pytest.mark.postgres
def test_plain_sql_and_orm_paths_agree(roles, monkeypatch):
    managers = Group.objects.create(name="Managers")
    manager = UserFactory(username="mia-manager")
    manager.groups.add(managers)
    team = Group.objects.create(name="Support leads")
    assign_perm("agents.review_agent", team, roles.other)
    roles.reviewer.groups.add(team)
    boss = UserFactory(username="sam-super")
    boss.is_superuser = True
    boss.save()
    helpdesk = SystemFactory(slug="helpdesk", name="Helpdesk")
    now = timezone.now()
    for n in range(40):
        agent = roles.agent if n % 3 else roles.other
        pending_action(
            agent, due_in=timedelta(minutes=n % 7 * 30 - 60), created_ago=timedelta(hours=n),
            route_to_group=managers if n % 5 == 0 else None,
            system=helpdesk if n % 4 == 0 else SystemFactory(slug="crm", name="CRM"),
            status=("pending", "approved", "rejected", "pending")[n % 4],
            sampled=n % 6 == 0, reviewed_by=roles.admin if n % 4 in (1, 2) else None,
            reviewed_at=now - timedelta(minutes=n % 9) if n % 4 in (1, 2) else None,
            reasons=[{"code": ("guardrail", "autonomy", "source_stale")[n % 3], "message": "m"}],
            claimed_by=roles.reviewer if n % 7 == 0 else None)
    pending_action(roles.agent, due_at=None)  # no due time: last
    pending_action(roles.agent, due_at=None)
    filters_list = [selectors.InboxFilters(tab=tab, **extra)
                    for tab in selectors.TABS
                    for extra in ({}, {"agent": "refund-replies"}, {"system": "helpdesk"},
                                  {"reason": "autonomy"}, {"age": "24h"})]
    users = [*roles.all().values(), manager, boss]
    for user in users:
        if not user.is_superuser:  # review_scope answers for superusers before either path
            assert selectors._scope_sql(user) == selectors._scope_orm(user), user
        for filters in filters_list:
            kwargs = {"filters": filters, "limit": 7, "now": now}
            first_orm = selectors._records_orm(user=user, cursor=None, **kwargs)
            scope = selectors.review_scope(user)
            first_sql = selectors._records_sql(scope=scope, cursor=None, **kwargs)
            assert _normalised(first_sql) == _normalised(first_orm), (user, filters)
            if first_orm:
                cursor = selectors.parse_cursor(selectors.encode_cursor(first_orm[-1],
                                                                        filters.tab))
                assert _normalised(selectors._records_sql(scope=scope, cursor=cursor, **kwargs)
                                   ) == _normalised(selectors._records_orm(
                                       user=user, cursor=cursor, **kwargs)), (user, filters)
            counts = []
            for raw in (True, False):
                monkeypatch.setattr(selectors, "_raw_sql", lambda raw=raw: raw)
                counts.append(selectors._bounded_count(user=user, filters=filters, limit=9,
                                                       now=now))
            monkeypatch.undo()
            assert counts[0] == counts[1], (user, filters)


def test_pages_reach_the_items_without_a_due_time(roles, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 3)
    timed = [pending_action(roles.agent, due_in=timedelta(hours=n)) for n in range(4)]
    untimed = [pending_action(roles.agent, due_at=None) for _ in range(4)]
    seen, after = [], ""
    for _ in range(10):
        page = selectors.inbox_page(user=roles.reviewer, filters=selectors.InboxFilters(),
                                    after=after)
        seen += [r.id for r in page.records]
        after = page.next_after
        if not after:
            break
    assert seen == [i.pk for i in timed + untimed]


def test_rows_escape_what_agents_send(client, roles):
    roles.agent.name = 'Refunds <b>"bold"</b>'
    roles.agent.save()
    DataSourceFactory(slug="evil-source", name="<img src=x onerror=alert(1)>")
    pending_action(roles.agent, summary="<script>alert(1)</script>", target="<i>t</i>",
                   operation="op<x>", currency="<u>", amount="1",
                   sources=["evil-source", "<svg>"],
                   reasons=[{"code": "<c>", "message": '" onmouseover="alert(1)'}])
    client.force_login(roles.reviewer)
    rows = inbox(client).split('id="inbox-list"')[1]
    for raw in ("<script>", "<b>", "<i>", "op<x>", "<u>", "<img", "<svg>", "<c>",
                '" onmouseover'):
        assert raw not in rows, raw
    for escaped in ("&lt;script&gt;", "Refunds &lt;b&gt;&quot;bold&quot;", "&lt;i&gt;t",
                    "op&lt;x&gt;", "&lt;img src=x", "&lt;svg&gt;: unknown",
                    "title=\"&quot; onmouseover=&quot;alert(1)\""):
        assert escaped in rows, escaped
