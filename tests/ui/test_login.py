"""Logging in to the dashboard, and what it shows without a token or with a wrong one."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from tests.ui.conftest import Dashboard, api, close_page, open_page, shot

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo.wasm"


def test_the_node_serves_the_dashboard_without_a_token_and_the_api_still_needs_one(
    dashboard: Dashboard,
) -> None:
    with urllib.request.urlopen(dashboard.base + "/ui/", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        assert b'<script type="module" src="/ui/app.js">' in resp.read()
    with urllib.request.urlopen(dashboard.base + "/ui", timeout=5) as resp:
        assert resp.url == dashboard.base + "/ui/"  # redirected
    assert api(dashboard, "/api/v1/agents", token="")[0] == 401
    status, body = api(dashboard, "/ui/no-such-file.js", token="")
    assert (status, body["error"]["code"]) == (404, "NOT_FOUND")


def test_a_wrong_token_shows_the_apis_401_message(browser: Browser, dashboard: Dashboard) -> None:
    context = browser.new_context()
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(dashboard.base + "/ui/")
    expect(page.get_by_role("heading", name="Log in to this node")).to_be_visible()
    page.get_by_label("Token or API key").fill("not-a-token")
    page.get_by_label("Token or API key").press("Enter")  # the keyboard is enough
    # The words are the API's own, for this very request.
    status, body = api(dashboard, "/api/v1/agents?limit=1", token="not-a-token")
    assert status == 401
    api_message = body["error"]["message"]
    expect(page.locator("#login-error")).to_have_text(api_message)
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('caxton.token')") is None
    shot(page, "login")
    # Nothing but the node itself was asked for anything.
    assert requests
    assert all(url.startswith(dashboard.base) for url in requests), requests
    context.close()


def test_the_token_lives_in_this_tab_only(browser: Browser, dashboard: Dashboard) -> None:
    page = open_page(browser, dashboard)
    assert page.evaluate("sessionStorage.getItem('caxton.token')") == dashboard.token
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    other = page.context.new_page()  # a new tab starts logged out
    other.goto(dashboard.base + "/ui/")
    expect(other.get_by_role("heading", name="Log in to this node")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to this node")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('caxton.token')") is None
    close_page(page)


def test_the_overview_shows_the_node_agents_rates_and_dead_letters(
    page: Page, dashboard: Dashboard
) -> None:
    cards = page.locator("#overview-cards")
    expect(cards.get_by_role("region", name="Nodes")).to_contain_text("alive")
    expect(page.locator("#agents-total")).to_have_text("11")
    expect(cards.get_by_role("region", name="Agents")).to_contain_text("running")
    expect(cards.get_by_role("region", name="Messages per second")).to_contain_text("handled")
    expect(cards.get_by_role("region", name="Handling time")).to_contain_text("ms")
    expect(page.locator("#dead-letter-count")).to_have_text(re.compile(r"^\d+$"))
    # Live: traffic shows in the rates, a deploy in the agent count, without a reload.
    rate = cards.get_by_role("region", name="Messages per second")
    handled = int(rate.locator(".note").inner_text().split()[0])
    for n in range(5):
        status, _ = api(
            dashboard,
            "/api/v1/messages?wait=5s",
            method="POST",
            body={"receiver": "echo", "performative": "request", "content": n},
        )
        assert status == 200
    expect(rate.locator(".note")).to_contain_text(f"{handled + 5} handled")
    # The line of the last minutes comes from the node's own samples (one every 5 s).
    expect(rate.locator("polyline")).to_have_attribute(
        "points", re.compile(r"^\S+ \S+"), timeout=20_000
    )
    status, _ = api(
        dashboard,
        "/api/v1/agents?name=overview-extra",
        method="POST",
        body=ECHO.read_bytes(),
        content_type="application/wasm",
    )
    assert status == 201
    expect(page.locator("#agents-total")).to_have_text("12")
    shot(page, "overview")
    api(dashboard, "/api/v1/agents/overview-extra", method="DELETE")
    expect(page.locator("#agents-total")).to_have_text("11")
