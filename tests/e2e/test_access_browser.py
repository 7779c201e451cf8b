"""An admin in a real browser grants a reviewer `review_agent` with one click on the agent's
access page, sees the row change without a reload, revokes it again; no console errors, and
the database and the audit trail say so."""

import pytest
from guardian.shortcuts import assign_perm

from portal.roles import ADMINS, REVIEWERS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_grants_and_revokes_review_with_a_click_without_reloading(live_server):
    from playwright.sync_api import expect

    from portal.models import AuditEvent

    # Data first: no ORM calls while the browser runs (see tests/e2e/chromium.py).
    admin = UserFactory(username="ada-admin", groups=[ADMINS])
    reviewer = UserFactory(username="rita-reviewer", groups=[REVIEWERS])
    owner = UserFactory(username="olga-owner")
    agent = make_agent(slug="refund-replies", name="Refund replies", owner=owner)
    assign_perm("agents.view_agent", reviewer, agent)

    console_errors = []
    with chromium_page() as page:
        page.on("console", lambda msg: msg.type == "error" and console_errors.append(msg.text))
        page.on("pageerror", lambda exc: console_errors.append(str(exc)))
        page.goto(f"{live_server.url}/accounts/login/?next=/")
        page.get_by_label("Username").fill(admin.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/")

        page.get_by_role("link", name="Access").click()
        expect(page).to_have_url(f"{live_server.url}/access/")
        page.get_by_role("link", name="Refund replies").click()
        expect(page).to_have_url(f"{live_server.url}/access/agent/refund-replies/")
        page.evaluate("window.stewardMarker = 'no reload'")

        row = page.locator(f"#access-user-{reviewer.pk}")
        owner_row = page.locator(f"#access-user-{owner.pk}")
        expect(owner_row.get_by_role("button", name="Revoke view from olga-owner")).to_have_count(0)
        expect(owner_row).to_contain_text("business owner")

        row.get_by_role("button", name="Grant review to rita-reviewer").click()
        expect(row).to_contain_text("Granted review to rita-reviewer.")
        expect(row.get_by_role("button", name="Revoke review from rita-reviewer")).to_be_visible()
        expect(row.get_by_role("button", name="Grant review to rita-reviewer")).to_have_count(0)

        row.get_by_role("button", name="Revoke review from rita-reviewer").click()
        expect(row).to_contain_text("Revoked review from rita-reviewer.")
        expect(row.get_by_role("button", name="Grant review to rita-reviewer")).to_be_visible()
        expect(row.get_by_role("button", name="Revoke view from rita-reviewer")).to_be_visible()

        assert page.evaluate("window.stewardMarker") == "no reload"

    assert console_errors == []
    assert not reviewer.has_perm("agents.review_agent", agent)
    assert reviewer.has_perm("agents.view_agent", agent)
    assert list(AuditEvent.objects.filter(verb__startswith="permission.", actor_user=admin)
                .order_by("id").values_list("verb", "data")) == [
        ("permission.granted", {"user": "rita-reviewer", "permissions": ["review_agent"]}),
        ("permission.revoked", {"user": "rita-reviewer", "permissions": ["review_agent"]}),
    ]
