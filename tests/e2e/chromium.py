"""Headless Debian Chromium driven by Playwright, for the browser test and the screenshot."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps calling home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


@contextmanager
def chromium_page(*, width: int = 1280, height: int = 800) -> Iterator:
    """A page in headless Chromium.

    Playwright's sync API keeps an asyncio loop running in this thread, and while it does,
    Django hands out a separate database connection that nobody closes. So: no ORM calls
    inside this block (Django refuses them) — create the data first.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
