"""An agent sends HTML and JavaScript in every free-text field; a reviewer opens the inbox and
the item in a real browser: nothing runs, the text shows as text, and Steward's own pages
load under the Content-Security-Policy without a single violation."""

import pytest

from agents import services
from tests.e2e.chromium import chromium_page
from tests.factories import PASSWORD, UserFactory, make_agent
from tests.reviews.conftest import AgentClient

MARK = "window.__xss = (window.__xss || 0) + 1"
PAYLOADS = {
    "summary": f"<script>{MARK}</script><img src=x onerror=\"{MARK}\">Refund Ann",
    "target": "<a href=\"javascript:alert('target')\">ticket 1</a>",
    "content": f"</textarea><script>alert('content')</script><svg onload=\"{MARK}\"></svg>",
    "prompt": "\"><img src=x onerror=\"alert('prompt')\"><style>body{display:none}</style>",
    "changes": {
        f"<b onmouseover=\"{MARK}\">key</b>": "<iframe src=\"javascript:alert('value')\">",
        "note": f"<details open ontoggle=\"{MARK}\">x</details>",
    },
}
SUMMARY_TEXT = PAYLOADS["summary"]


def _violations(messages):
    return [m for m in messages if "Content Security Policy" in m or "Refused to" in m]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_html_and_script_from_an_agent_never_run_in_the_inbox_or_item_page(live_server,
                                                                            client):
    from playwright.sync_api import expect

    # Data first, through the real API (no ORM calls while the browser runs).
    agent = make_agent(slug="refund-replies", name="Refund replies", ready=True)
    agent = services.agent_move(actor=None, agent=agent, to_status="pilot")
    _token, secret = services.agent_token_create(actor=None, agent=agent, name="t")
    proposal = {"system": "helpdesk", "operation": "refund_reply", "kind": "draft",
                "confidence": 0.9, **PAYLOADS}
    answer = AgentClient(client, secret).post("/actions", proposal)
    assert answer.status_code == 201, answer.content
    item_id = answer.json()["id"]
    assert answer.json()["status"] == "pending"
    reviewer = UserFactory(username="rita-reviewer", is_superuser=True, is_staff=True)

    dialogs, console, errors = [], [], []
    with chromium_page() as page:
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: console.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))

        page.goto(f"{live_server.url}/accounts/login/?next=/reviews/")
        page.get_by_label("Username").fill(reviewer.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/reviews/")

        # The inbox: the summary is shown as the characters the agent sent.
        row = page.locator("li.inbox-row").first
        expect(row).to_contain_text(SUMMARY_TEXT)
        for page_url in ("/reviews/", f"/reviews/{item_id}/"):
            response = page.goto(f"{live_server.url}{page_url}")
            assert "script-src 'self'" in response.headers["content-security-policy"]
            main = page.locator("main")
            expect(main).to_contain_text("Refund Ann")
            page.mouse.move(300, 300)  # give mouseover/ontoggle handlers their chance
            assert main.locator("script, iframe, svg[onload], img[src='x'], details[ontoggle], "
                                "b[onmouseover], style").count() == 0
            assert page.evaluate("window.__xss") is None

        # The item page shows every field as text.
        for text in ("</textarea><script>alert('content')</script>",
                     "\"><img src=x onerror=\"alert('prompt')\">",
                     "<b onmouseover=", "<iframe src=\"javascript:alert('value')\">",
                     "<a href=\"javascript:alert('target')\">ticket 1</a>"):
            expect(page.locator("main")).to_contain_text(text)
        assert page.locator("main a[href^='javascript:']").count() == 0
        expect(page.locator("body")).to_be_visible()  # the <style> did not hide the page

        # Steward's own pages load under the policy without a violation.
        for path in ("/", "/agents/", "/agents/refund-replies/", "/reviews/", "/metrics/",
                     "/metrics/refund-replies/", "/metrics/imports/", "/incidents/",
                     "/audit/", "/admin/", "/admin/axes/accessattempt/",
                     "/accounts/password_change/", "/api/v1/docs"):
            response = page.goto(f"{live_server.url}{path}")
            assert response.status == 200, path
            assert response.headers["content-security-policy"], path
            page.wait_for_load_state("networkidle")

    assert dialogs == []
    assert errors == []
    assert _violations(console) == [], console
