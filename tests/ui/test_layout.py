"""Narrow windows, the dark colour scheme, and the keyboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.ui.conftest import Dashboard, api, close_page, open_page, shot

PAGES = ["overview", "agents", "agents/manager", "conversations", "live", "dead-letters", "cluster"]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_every_page_fits_a_narrow_window_in_both_colour_schemes(
    browser: Browser, dashboard: Dashboard, dark: bool
) -> None:
    page = open_page(browser, dashboard, dark=dark, width=380)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == ("rgb(13, 17, 23)" if dark else "rgb(255, 255, 255)")
    for name in PAGES:
        page.goto(f"{dashboard.base}/ui/#/{name}")
        expect(page.locator("main h1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        # Wide content (tables, the diagram) scrolls inside its own box, not the page.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: the page is {overflow}px wider than the window"
    if dark:
        page.goto(f"{dashboard.base}/ui/#/agents")
        expect(page.locator("tbody tr").first).to_be_visible()
        shot(page, "agents-narrow-dark")
    close_page(page)


def test_the_pages_are_reachable_and_usable_from_the_keyboard(
    browser: Browser, dashboard: Dashboard
) -> None:
    page = open_page(browser, dashboard)
    page.reload()  # a fresh load: still logged in (this tab's session storage)
    expect(page.locator("#overview-cards")).to_be_visible()
    page.keyboard.press("Tab")  # the skip link first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    assert "#main" not in page.url  # the route stays the overview
    expect(page.locator("#overview-cards")).to_be_visible()
    page.reload()
    expect(page.locator("#overview-cards")).to_be_visible()
    page.keyboard.press("Tab")
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Conversations")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    # Send to echo from the keyboard alone.
    page.get_by_label("To (names, comma-separated)").focus()
    page.keyboard.type("echo")
    page.keyboard.press("Tab")  # performative: request is the first
    page.keyboard.press("Tab")
    page.keyboard.type('"typed"')
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".seq g.message")).to_have_count(2)
    conversation = page.url.rsplit("/", 1)[1]
    status, body = api(dashboard, f"/api/v1/conversations/{conversation}")
    assert status == 200
    assert body["messages"][1]["content"] == "typed"
    close_page(page)
