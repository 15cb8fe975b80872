"""Conversations: a contract-net negotiation sent from the page, drawn as a sequence diagram."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.ui.conftest import Dashboard, api, shot

START = {"op": "start", "task": "build-widget", "bidders": ["bidder-a", "bidder-b", "bidder-c"]}


def test_a_contract_net_from_the_page_reads_as_a_sequence_diagram(
    page: Page, dashboard: Dashboard
) -> None:
    page.get_by_role("link", name="Conversations").click()
    page.get_by_label("To (names, comma-separated)").fill("manager")
    page.get_by_label("Performative").select_option("request")
    page.get_by_label("Content (JSON)").fill(json.dumps(START))
    page.get_by_role("button", name="Send").click()
    expect(page).to_have_url(re.compile(r"#/conversations/.+"))
    conversation = page.url.rsplit("/", 1)[1]

    diagram = page.locator(".seq svg")
    # One arrow per message, the whole negotiation, as the node recorded it.
    expect(diagram.locator("g.message")).to_have_count(11, timeout=15_000)
    lifelines = diagram.locator("g.participant").evaluate_all("gs => gs.map(g => g.dataset.name)")
    assert lifelines[1:] == ["manager", "bidder-a", "bidder-b", "bidder-c"]
    assert lifelines[0].startswith("client-")  # the page's made-up client name
    arrows = diagram.locator("g.message").evaluate_all(
        "gs => gs.map(g => [g.dataset.from, g.dataset.to, g.dataset.performative])"
    )
    client = lifelines[0]
    assert arrows[0] == [client, "manager", "request"]
    assert sorted(a[1] for a in arrows if a[2] == "cfp") == ["bidder-a", "bidder-b", "bidder-c"]
    assert sorted((a[0], a[2]) for a in arrows if a[1] == "manager" and a[0] != client) == [
        ("bidder-a", "propose"),
        ("bidder-b", "inform"),
        ("bidder-b", "propose"),
        ("bidder-c", "refuse"),
    ]
    assert ["manager", "bidder-b", "accept_proposal"] in arrows
    assert ["manager", "bidder-a", "reject_proposal"] in arrows
    assert arrows[-1] == ["manager", client, "inform"]
    # Each arrow says its performative and time.
    first = diagram.locator("g.message").first
    expect(first.locator("text").first).to_have_text("request")
    expect(first.locator("text.time")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    # The raw messages beside it are the API's.
    status, body = api(dashboard, f"/api/v1/conversations/{conversation}?limit=1000")
    assert status == 200
    raw = json.loads(page.locator("#raw-messages").inner_text())
    assert [m["message_id"] for m in raw] == [m["message_id"] for m in body["messages"]]
    assert raw[-1]["content"]["winner"] == "bidder-b"
    shot(page, "conversation")

    # Found again by agent: the manager's recent conversations list it.
    page.get_by_label("Conversation id or agent").fill("bidder-c")
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#found").get_by_role("link", name=conversation)).to_be_visible()
    page.locator("#found").get_by_role("link", name=conversation).click()
    expect(diagram.locator("g.message")).to_have_count(11)


def test_an_unknown_conversation_shows_the_apis_404(page: Page, dashboard: Dashboard) -> None:
    page.get_by_role("link", name="Conversations").click()
    page.get_by_label("Conversation id or agent").fill("no-such-conversation-1")
    page.get_by_role("button", name="Find").click()
    status, body = api(dashboard, "/api/v1/conversations/no-such-conversation-1")
    assert status == 404
    expect(page.locator("#error")).to_have_text(body["error"]["message"])
