"""An owner in a real browser: the alerts list with its badge, one alert's evidence and
recommendation, acknowledged with a note in place (htmx), without a console error."""

from datetime import timedelta

import pytest
from django.utils import timezone

from metrics.models import Alert
from portal.roles import OWNERS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_acknowledges_an_alert_with_a_note(live_server):
    from playwright.sync_api import expect

    # Data first: no ORM calls while the browser runs (see tests/e2e/chromium.py).
    owner = UserFactory(username="olga-owner", groups=[OWNERS])
    agent = make_agent(owner=owner, slug="refund-replies", name="Refund replies")
    now = timezone.now()
    alert = Alert.objects.create(
        kind=Alert.Kind.REVIEW_BACKLOG, agent=agent, dedupe_key=f"review_backlog:{agent.pk}:",
        severity=Alert.Severity.WARNING, title="7 review items are past their due time",
        message="Refund replies waits on reviewers.", action="review_backlog",
        recommendation="Add a reviewer, or lower the share of items sent to review.",
        evidence={"overdue": 7, "oldest_overdue_hours": 30.5},
        first_seen=now - timedelta(hours=30), opened_at=now - timedelta(hours=30),
        last_seen=now)
    errors: list[str] = []

    with chromium_page() as page:
        page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url')}")
                if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.url}/accounts/login/?next=/metrics/alerts/")
        page.get_by_label("Username").fill(owner.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
        expect(page.locator(".nav-alerts")).to_have_text("1")
        row = page.locator(f'tr[data-alert="{alert.pk}"]')
        expect(row.locator(".alert-status")).to_have_text("open")
        row.get_by_role("link", name="7 review items are past their due time").click()

        expect(page).to_have_url(f"{live_server.url}/metrics/alerts/{alert.pk}/")
        expect(page.get_by_text("Add a reviewer, or lower the share")).to_be_visible()
        expect(page.locator("table.evidence")).to_contain_text("30.5")
        expect(page.get_by_role("button", name="Work through its waiting items")).to_have_attribute(
            "href", "/reviews/?agent=refund-replies")

        page.get_by_label("Acknowledge: what are you doing about it?").fill(
            "Asked Rob to clear the queue today.")
        page.get_by_role("button", name="Acknowledge").click()
        state = page.locator("#alert-state")
        expect(state).to_contain_text("The alert is acknowledged.")
        expect(state).to_contain_text("Asked Rob to clear the queue today.")
        expect(page.locator("#alert-status-badge")).to_have_text("acknowledged")
        expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)

        page.get_by_role("link", name="Alerts", exact=True).first.click()
        expect(page.locator(f'tr[data-alert="{alert.pk}"] .alert-status')).to_have_text(
            "acknowledged")
        expect(page.locator(".nav-alerts")).to_have_count(0)

    assert [e for e in errors if not e.endswith("/favicon.ico")] == []
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by, alert.acknowledge_note) == (
        "acknowledged", owner, "Asked Rob to clear the queue today.")
