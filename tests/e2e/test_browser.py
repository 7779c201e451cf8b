"""A person in a real browser: log in, open the agent list, click through to an agent."""

import re

import pytest

from portal.roles import OWNERS
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_logs_in_and_opens_their_agent(live_server):
    from playwright.sync_api import expect

    owner = UserFactory(username="olga-owner", groups=[OWNERS])
    agent = make_agent(owner=owner, slug="refund-replies", name="Refund replies", ready=True)
    make_agent(owner=UserFactory(username="oscar-other", groups=[OWNERS]),
               slug="crm-hygiene", name="CRM hygiene")

    with chromium_page() as page:
        page.goto(f"{live_server.url}/agents/")
        expect(page).to_have_url(re.compile(r"/accounts/login/"))
        page.get_by_label("Username").fill(owner.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        expect(page).to_have_url(f"{live_server.url}/agents/")
        expect(page.get_by_role("heading", name="Agents")).to_be_visible()
        expect(page.get_by_role("link", name="Refund replies")).to_be_visible()
        expect(page.get_by_text("CRM hygiene")).to_have_count(0)  # not theirs

        page.get_by_role("link", name="Refund replies").click()
        expect(page).to_have_url(f"{live_server.url}/agents/refund-replies/")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Refund replies")
        expect(page.locator("p.outcome")).to_have_text(agent.business_outcome)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_owner_pauses_an_agent_after_confirming(live_server):
    from playwright.sync_api import expect

    from agents import services
    from agents.models import Agent

    owner = UserFactory(username="olga-owner", groups=[OWNERS])
    agent = make_agent(owner=owner, slug="refund-replies", name="Refund replies", ready=True)
    services.agent_move(actor=None, agent=agent, to_status="pilot")
    dialogs = []

    with chromium_page() as page:
        page.goto(f"{live_server.url}/accounts/login/?next=/agents/refund-replies/")
        page.get_by_label("Username").fill(owner.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        page.get_by_label("Pause this agent now: reason").fill("Replies quote the old policy")
        page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.get_by_role("button", name="Pause", exact=True).click()
        expect(page.get_by_role("alert").filter(has_text="Paused")).to_contain_text(
            "Replies quote the old policy")
        expect(page.get_by_role("button", name="Resume")).to_be_visible()

    assert dialogs and "every action of it is blocked" in dialogs[0]
    agent = Agent.objects.get(slug="refund-replies")
    assert (agent.status, agent.pause_reason, agent.paused_by) == (
        "paused", "Replies quote the old policy", owner)
