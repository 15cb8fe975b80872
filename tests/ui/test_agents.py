"""The agents table, deploying a module by file upload, and one agent's page."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.ui.conftest import Dashboard, api, shot

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo.wasm"
EXAMPLES = ["bidder-a", "bidder-b", "bidder-c", "counter", "echo", "manager", "ping", "pong"]


def rows(page: Page) -> list[str]:
    ids: list[str] = page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.id)")
    return ids


def test_the_table_lists_the_example_agents_filters_and_sorts(page: Page) -> None:
    page.get_by_role("link", name="Agents").click()
    table = page.get_by_role("table")
    for name in EXAMPLES:
        expect(table.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(table.locator("tbody tr")).to_have_count(11)
    echo = table.locator("tr[data-id=echo]")
    expect(echo).to_contain_text("running")
    expect(echo.locator("td").nth(4)).to_have_text(re.compile(r"^\d+$"))  # mailbox depth
    shot(page, "agents")
    page.get_by_label("Filter").fill("bidder")
    expect(table.locator("tbody tr")).to_have_count(3)
    page.get_by_label("Filter").fill("")
    page.get_by_role("button", name="Name").click()  # sorted by name: now descending
    expect(table.locator("th").first).to_have_attribute("aria-sort", "descending")
    names = rows(page)
    assert names == sorted(names, reverse=True)


def test_deploy_by_file_upload_then_stop_start_and_remove(page: Page, dashboard: Dashboard) -> None:
    page.get_by_role("link", name="Agents").click()
    page.locator("#deploy-file").set_input_files(str(ECHO))
    expect(page.get_by_label("Name", exact=True)).to_have_value("echo")  # from the file name
    page.get_by_label("Name", exact=True).fill("uploaded-echo")
    page.get_by_role("button", name="Deploy").click()
    expect(page.locator("#deploy-status")).to_have_text("Deployed uploaded-echo (version 1).")
    expect(page.locator("tr[data-id=uploaded-echo]")).to_contain_text("running")
    # The same name again: the API's 409, in its words.
    page.locator("#deploy-file").set_input_files(str(ECHO))
    page.get_by_label("Name", exact=True).fill("uploaded-echo")
    page.get_by_role("button", name="Deploy").click()
    expect(page.locator("#error")).to_contain_text("uploaded-echo")
    expect(page.locator("#error")).to_contain_text("caxton agent upgrade")

    page.get_by_role("link", name="uploaded-echo").click()
    expect(page.get_by_role("heading", name="Agent uploaded-echo")).to_contain_text("running")
    # Stop asks first; Cancel leaves it running.
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("dialog")).to_contain_text("Stop agent uploaded-echo?")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", name="Agent uploaded-echo")).to_contain_text("running")
    page.get_by_role("button", name="Stop").click()
    page.keyboard.press("Escape")  # closes the dialog as Cancel does
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("heading", name="Agent uploaded-echo")).to_contain_text("running")
    assert api_state(dashboard, "uploaded-echo") == "running"
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("dialog").get_by_role("button", name="Stop").click()
    expect(page.get_by_role("heading", name="Agent uploaded-echo")).to_contain_text("stopped")
    assert api_state(dashboard, "uploaded-echo") == "stopped"
    # Start from the keyboard.
    page.get_by_role("button", name="Start").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_be_visible()
    page.keyboard.press("Tab")  # Cancel -> Start
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Agent uploaded-echo")).to_contain_text("running")
    assert api_state(dashboard, "uploaded-echo") == "running"

    page.get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove").click()
    expect(page).to_have_url(re.compile(r"#/agents$"))
    expect(page.locator("tbody tr")).to_have_count(11)
    expect(page.locator("tr[data-id=uploaded-echo]")).to_have_count(0)


def test_an_agents_page_shows_limits_versions_messages_and_logs(
    page: Page, dashboard: Dashboard
) -> None:
    status, sent = api(
        dashboard,
        "/api/v1/messages?wait=5s",
        method="POST",
        body={"receiver": "counter", "performative": "request", "content": {}},
    )
    assert status == 200, sent
    page.goto(dashboard.base + "/ui/#/agents/counter")
    expect(page.get_by_role("heading", name="Agent counter")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Mailbox")
    expect(page.locator("dl.facts")).to_contain_text("of 1024")
    expect(page.locator("#versions")).to_contain_text("version 1 (current)")
    # The request and counter's reply, newest first, linked to their conversation.
    recent = page.locator("#recent-messages tbody tr")
    expect(recent.first).to_contain_text("inform")
    conversation = sent["conversation_id"]
    expect(recent.get_by_role("link", name=conversation)).to_have_count(2)
    expect(page.locator("#agent-logs")).to_be_visible()
    shot(page, "agent")


def api_state(dashboard: Dashboard, name: str) -> str:
    status, body = api(dashboard, f"/api/v1/agents/{name}")
    assert status == 200, body
    state: str = body["state"]
    return state
