"""A RevOps leader in a real browser: the fleet scorecard, then one agent's charts, then a
target saved inline and a review recorded, without a console error."""

import pytest

from metrics.models import Metric, Rollup, ScorecardReview, Target
from portal.roles import OWNERS, REVOPS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent
from tests.metrics.test_scorecard_fleet import series, target


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_revops_reads_the_fleet_and_an_agents_charts(live_server):
    from playwright.sync_api import expect

    # Data first: no ORM calls while the browser runs (see tests/e2e/chromium.py).
    leader = UserFactory(username="rachel-revops", groups=[REVOPS, OWNERS])
    agent = make_agent(owner=leader, slug="refund-replies", name="Refund replies")
    make_agent(slug="crm-hygiene", name="CRM hygiene")
    series(agent, "cycle_time", [12, 11, 10, 9, 8, 6])
    series(agent, "accuracy", [96, 95, 94, 92, 90, 85])
    series(agent, "acceptance_rate", [80, 82, 85, 85, 86, 88])
    target(agent, "accuracy", 95, 92)
    assert Rollup.objects.count() == 18 and Metric.objects.filter(headline=True).count() == 4
    errors: list[str] = []

    with chromium_page() as page:
        page.on("console", lambda m: errors.append(f"{m.text} {m.location.get('url')}")
                if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.url}/accounts/login/?next=/metrics/")
        page.get_by_label("Username").fill(leader.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        expect(page.get_by_role("heading", name="Scorecards", level=1)).to_be_visible()
        rows = page.locator("tr.fleet-row")
        expect(rows).to_have_count(2)
        wrong = page.locator('tr[data-agent="refund-replies"]')
        expect(wrong).to_have_class("fleet-row wrong-way")
        expect(wrong.locator(".change-worse").first).to_contain_text("-5")
        expect(wrong.locator(".target-missed")).to_have_text("missed")

        wrong.get_by_role("link", name="Refund replies").click()
        expect(page).to_have_url(f"{live_server.url}/metrics/refund-replies/")
        expect(page.get_by_text("Faster, but worse: reduce autonomy")).to_be_visible()
        charts = page.locator("svg.chart")
        expect(charts).to_have_count(3)
        for i in range(3):
            polyline = charts.nth(i).locator("polyline.series")
            expect(polyline).to_be_visible()
            box = polyline.bounding_box()
            assert box and box["width"] > 100, box  # drawn across the chart, not collapsed
        accuracy = page.locator('figure[data-metric="accuracy"] svg')
        expect(accuracy.locator("line.target-line")).to_have_count(1)
        expect(accuracy.locator("line.baseline-line")).to_have_count(1)
        expect(accuracy).to_have_attribute("aria-label", "Accuracy: 6 periods, latest 85 %, "
                                           "target 95 %, human baseline 92 %")

        # a target saved inline (htmx swaps the row in place)
        page.get_by_label("Target for Cycle time").fill("7")
        page.locator("#target-cycle_time").get_by_role("button", name="Save").click()
        expect(page.locator("#target-cycle_time .saved")).to_have_text("Saved")

        # the review, recorded in place
        page.get_by_label("Revise").check()
        page.get_by_label("Notes").fill("Accuracy slides: back to L1 until it recovers.")
        page.get_by_role("button", name="Record the review").click()
        expect(page.locator("#review")).to_contain_text("Recorded: Revise.")
        expect(page.locator(".review-history")).to_contain_text("Accuracy slides")

    # the portal has no favicon yet; Chromium asks for one on every page
    assert [e for e in errors if not e.endswith("/favicon.ico")] == []
    assert Target.objects.get(agent=agent, metric__key="cycle_time").target == 7
    review = ScorecardReview.objects.get()
    assert (review.decision, review.reviewer) == ("revise", leader)
