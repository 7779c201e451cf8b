"""A person in a real browser ticks a rollout task in place (htmx) and prints the agent card."""

import os

import pytest

from portal.roles import OWNERS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent

SHOTS = os.environ.get("STEWARD_SHOTS_DIR")  # set it to keep screenshots of the pages


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_ticks_a_task_in_place_and_prints_the_card(live_server):
    from playwright.sync_api import expect

    from agents import services
    from agents.models import RolloutTask

    owner = UserFactory(username="olga-owner", groups=[OWNERS])
    agent = make_agent(owner=owner, slug="refund-replies", name="Refund replies", ready=True)
    services.agent_move(actor=None, agent=agent, to_status="pilot")

    with chromium_page(height=2400) as page:
        page.goto(f"{live_server.url}/accounts/login/?next=/agents/refund-replies/")
        page.get_by_label("Username").fill(owner.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        plan = page.locator("#rollout-weeks")
        expect(plan).to_contain_text("30-day plan · 4 of 15 done")
        expect(page.locator("#readiness")).to_contain_text("not ready")
        row = page.locator("li.plan-task").filter(has_text="Map the inputs")
        row.get_by_role("button", name="Mark done").click()
        expect(plan).to_contain_text("30-day plan · 5 of 15 done")
        expect(page.locator("li.plan-task.done").filter(has_text="Map the inputs")).to_be_visible()
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/agent-plan.png", full_page=True)

        page.get_by_role("link", name="Agent card").click()
        expect(page.get_by_role("heading", name="Its guardrails")).to_be_visible()
        page.emulate_media(media="print")
        expect(page.locator("header.topbar")).to_be_hidden()
        expect(page.locator(".agent-card .actions")).to_be_hidden()
        if SHOTS:
            page.screenshot(path=f"{SHOTS}/card-print.png", full_page=True)
            page.emulate_media(media="screen")
            page.screenshot(path=f"{SHOTS}/card.png", full_page=True)

    task = RolloutTask.objects.get(agent=agent, key="map")
    assert task.done_by == owner
