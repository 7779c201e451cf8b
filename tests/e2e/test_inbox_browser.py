"""A reviewer in a real browser works the inbox with the keyboard: approves one item, rejects
another with a reason, without a full page reload; then the database says so."""

import re
from datetime import timedelta

import pytest
from guardian.shortcuts import assign_perm

from portal.roles import REVIEWERS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reviewer_approves_and_rejects_from_the_inbox_without_reloading(live_server):
    from playwright.sync_api import expect

    from tests.reviews.test_inbox import pending_action

    # Data first: no ORM calls while the browser runs (see tests/e2e/chromium.py).
    reviewer = UserFactory(username="rita-reviewer", groups=[REVIEWERS])
    agent = make_agent(slug="refund-replies", name="Refund replies", ready=True)
    assign_perm("agents.view_agent", reviewer, agent)
    assign_perm("agents.review_agent", reviewer, agent)
    first = pending_action(agent, summary="Refund 40 EUR to Ann", due_in=timedelta(hours=1))
    second = pending_action(agent, summary="Refund 75 EUR to Bob", due_in=timedelta(hours=2))
    third = pending_action(agent, summary="Refund 12 EUR to Cem", due_in=timedelta(hours=3))

    with chromium_page() as page:
        page.goto(f"{live_server.url}/accounts/login/?next=/reviews/")
        page.get_by_label("Username").fill(reviewer.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/reviews/")
        rows = page.locator("li.inbox-row")
        expect(rows).to_have_count(3)
        expect(page.locator(".nav-count")).to_have_text("3")
        page.evaluate("window.stewardMarker = 'no reload'")

        # ? shows the keys, Escape closes them.
        page.keyboard.press("?")
        expect(page.locator("#keys-help")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#keys-help")).to_be_hidden()

        # j selects the first row (oldest due), a approves it.
        page.keyboard.press("j")
        expect(rows.first).to_have_class(re.compile(r"\bis-selected\b"))
        page.keyboard.press("a")
        expect(page.locator("#review-flash")).to_contain_text("Approved: Refund 40 EUR to Ann")
        expect(rows).to_have_count(2)
        expect(page.get_by_text("Refund 40 EUR to Ann")).to_have_count(1)  # the flash only

        # The next row is selected now; r opens its reason field, Enter sends it.
        expect(rows.first).to_have_class(re.compile(r"\bis-selected\b"))
        page.keyboard.press("r")
        reason = rows.first.get_by_label("Reason for rejecting")
        expect(reason).to_be_focused()
        reason.fill("Bob was refunded last week already")
        reason.press("Enter")
        expect(page.locator("#review-flash")).to_contain_text("Rejected: Refund 75 EUR to Bob")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Refund 12 EUR to Cem")

        # Typing in a field does not trigger the keys.
        page.keyboard.press("r")
        rows.first.get_by_label("Reason for rejecting").type("a j k")
        expect(rows).to_have_count(1)

        assert page.evaluate("window.stewardMarker") == "no reload"

    first.refresh_from_db()
    second.refresh_from_db()
    third.refresh_from_db()
    assert (first.status, first.reviewed_by) == ("approved", reviewer)
    assert (second.status, second.reviewed_by, second.review_note) == (
        "rejected", reviewer, "Bob was refunded last week already")
    assert third.status == "pending"
