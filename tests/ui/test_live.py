"""The live event list (pause, resume, filter), dead letters with redrive, cluster members."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support import wait_until
from tests.ui.conftest import Dashboard, api, shot

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo.wasm"


def send(dashboard: Dashboard, receiver: str, content: object) -> str:
    status, body = api(
        dashboard,
        "/api/v1/messages",
        method="POST",
        body={"receiver": receiver, "performative": "request", "content": content},
    )
    assert status == 202, body
    conversation: str = body["conversation_id"]
    return conversation


def test_the_live_list_receives_events_pauses_resumes_and_filters(
    page: Page, dashboard: Dashboard
) -> None:
    page.get_by_role("link", name="Live").click()
    expect(page.locator("#live-status")).to_have_text("live")
    events = page.locator("#events li:visible")
    conversation = send(dashboard, "echo", "first")
    expect(events.filter(has_text=conversation)).to_have_count(2)  # the request, echo's inform
    expect(events.filter(has_text=conversation).first).to_contain_text("echo →")

    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_have_attribute("aria-pressed", "true")
    held = send(dashboard, "echo", "while paused")
    expect(page.locator("#live-status")).to_have_text("paused (2 new)")
    expect(page.locator("#events li").filter(has_text=held)).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(events.filter(has_text=held)).to_have_count(2)

    shot(page, "live")
    page.get_by_label("Filter").fill("inform")
    expect(events.filter(has_text=held)).to_have_count(1)
    expect(events.filter(has_text=held)).to_contain_text("inform")
    page.get_by_label("Filter").fill("no event has this text")
    expect(events).to_have_count(0)


def test_dead_letters_are_listed_with_reasons_and_redriven(
    page: Page, dashboard: Dashboard
) -> None:
    conversations = [send(dashboard, "late-agent", n) for n in range(3)]
    page.get_by_role("link", name="Dead letters").click()
    table = page.locator("#dead-letters")
    rows = table.locator("tbody tr").filter(has_text="late-agent")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("unknown_receiver")
    shot(page, "dead-letters")
    # The receiver exists now: deploy it, then redrive one, then the two others together.
    status, body = api(
        dashboard,
        "/api/v1/agents?name=late-agent",
        method="POST",
        body=ECHO.read_bytes(),
        content_type="application/wasm",
    )
    assert status == 201, body
    rows.nth(0).get_by_role("button", name="Redrive").click()
    expect(page.locator("#redrive-status")).to_have_text("Redrove 1 of 1.")
    expect(rows.filter(has_text="redriven")).to_have_count(1)
    for i in range(3):
        box = rows.nth(i).get_by_role("checkbox")
        if box.count():
            box.check()
    page.get_by_role("button", name="Redrive selected").click()
    expect(page.locator("#redrive-status")).to_have_text("Redrove 2 of 2.")
    expect(rows.filter(has_text="redriven")).to_have_count(3)

    def answered() -> bool:
        for conversation in conversations:
            status, body = api(dashboard, f"/api/v1/conversations/{conversation}")
            if status != 200 or not any(m["sender"] == "late-agent" for m in body["messages"]):
                return False
        return True

    wait_until(answered, 10, what="the redriven messages were answered")
    api(dashboard, "/api/v1/agents/late-agent", method="DELETE")


def test_a_redrive_the_api_refuses_shows_its_words(page: Page, dashboard: Dashboard) -> None:
    send(dashboard, "never-deployed", "x")
    page.get_by_role("link", name="Dead letters").click()
    row = page.locator("#dead-letters tbody tr").filter(has_text="never-deployed").first
    expect(row).to_be_visible()
    ident = row.get_attribute("data-id")
    status, _ = api(dashboard, f"/api/v1/dead-letters/{ident}/redrive", method="POST", body={})
    assert status == 202
    row.get_by_role("button", name="Redrive").click()  # the page has not seen it redriven
    status, body = api(dashboard, f"/api/v1/dead-letters/{ident}/redrive", method="POST", body={})
    assert status == 400
    expect(page.locator("#error")).to_have_text(body["error"]["message"])


def test_the_cluster_page_lists_this_node(page: Page) -> None:
    page.get_by_role("link", name="Cluster").click()
    members = page.locator("#members tbody tr")
    expect(members).to_have_count(1)
    expect(members.first).to_contain_text("(this node)")
    expect(members.first).to_contain_text("alive")
    expect(page.locator("main")).to_contain_text(re.compile("Not clustered"))
