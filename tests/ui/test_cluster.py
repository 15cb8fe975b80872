"""The dashboard of a node in a real two-node cluster (authentication off): members and their
state, agents on the other node, and its dead letters redriven through this node."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.cluster.nodes import Cluster
from tests.support import wait_until
from tests.ui.conftest import close_page, open_page, shot

ECHO = Path(__file__).resolve().parents[2] / "examples" / "agents" / "echo.wasm"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Cluster(tmp_path, 2) as nodes:
        nodes.start()
        nodes.all_alive()
        yield nodes


@pytest.fixture
def page(browser: Browser, cluster: Cluster) -> Iterator[Page]:
    tab = open_page(browser, cluster[0].url("api", ""))  # no login: authentication is off
    yield tab
    close_page(tab)


def test_members_remote_agents_and_remote_dead_letters(cluster: Cluster, page: Page) -> None:
    here, there = cluster[0], cluster[1]
    status, body = there.call(
        "POST",
        "/api/v1/agents",
        {"name": "far-echo", "wasm": base64.b64encode(ECHO.read_bytes()).decode()},
    )
    assert status == 201, body
    status, body = there.call(
        "POST", "/api/v1/messages", {"receiver": "nobody-here", "performative": "inform"}
    )
    assert status == 202, body

    page.get_by_role("link", name="Cluster").click()
    members = page.locator("#members tbody tr")
    expect(members).to_have_count(2)
    expect(page.locator("main")).to_contain_text(f"2 members, seen from {here.name}.")
    expect(members.filter(has_text=here.name)).to_contain_text("(this node)")
    far = page.locator(f"#members tr[data-name='{there.name}']")
    expect(far).to_contain_text("alive")
    expect(far.locator("td").nth(2)).to_have_text("1")  # far-echo
    shot(page, "cluster-members")

    page.get_by_role("link", name="Agents").click()
    expect(page.locator("tr[data-id=far-echo]")).to_contain_text(there.name)

    page.get_by_role("link", name="Dead letters").click()
    row = page.locator("#dead-letters tbody tr").filter(has_text="nobody-here")
    expect(row).to_contain_text(there.name)  # the node that keeps it
    row.get_by_role("button", name="Redrive").click()
    expect(page.locator("#redrive-status")).to_have_text("Redrove 1 of 1.")

    def redriven() -> bool:
        status, body = there.call("GET", "/api/v1/dead-letters")
        return status == 200 and body["dead_letters"][0]["redriven_at"] is not None

    wait_until(redriven, 10, what="the other node's dead letter was redriven")

    # The other node goes away: the page shows it leaving the cluster.
    page.get_by_role("link", name="Cluster").click()
    cluster.kill(1)
    expect(far.locator(".state")).to_have_text(re.compile("suspect|dead"), timeout=15_000)
