"""Deploying by dropping a file, upgrading and rolling back from an agent's page."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.ui.conftest import Dashboard, api

AGENTS = Path(__file__).resolve().parents[2] / "examples" / "agents"


def test_deploy_by_dropping_a_wasm_file(page: Page, dashboard: Dashboard) -> None:
    page.get_by_role("link", name="Agents").click()
    data = list((AGENTS / "echo.wasm").read_bytes())
    transfer = page.evaluate_handle(
        """bytes => {
            const t = new DataTransfer();
            const file = new File([new Uint8Array(bytes)], "Dropped_Echo.wasm");
            t.items.add(file);
            return t;
        }""",
        data,
    )
    page.locator("#deploy-drop").dispatch_event("dragover", {"dataTransfer": transfer})
    expect(page.locator("#deploy-drop")).to_have_class(re.compile("over"))
    page.locator("#deploy-drop").dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("#deploy-status")).to_contain_text("Dropped_Echo.wasm")
    expect(page.get_by_label("Name", exact=True)).to_have_value("dropped-echo")
    page.get_by_role("button", name="Deploy").click()
    expect(page.locator("tr[data-id=dropped-echo]")).to_contain_text("running")
    status, body = api(dashboard, "/api/v1/agents/dropped-echo")
    assert status == 200
    assert body["module_size"] == len(data)
    api(dashboard, "/api/v1/agents/dropped-echo", method="DELETE")


def test_upgrade_and_roll_back_from_the_agents_page(page: Page, dashboard: Dashboard) -> None:
    wasm = (AGENTS / "echo.wasm").read_bytes()
    status, _ = api(
        dashboard,
        "/api/v1/agents?name=versioned",
        method="POST",
        body=wasm,
        content_type="application/wasm",
    )
    assert status == 201
    page.goto(dashboard.base + "/ui/#/agents/versioned")
    expect(page.locator("#versions")).to_have_text("version 1 (current)")
    page.get_by_label("Upgrade with a new module").set_input_files(str(AGENTS / "pong.wasm"))
    expect(page.locator("#versions li")).to_have_count(2)
    expect(page.locator("#versions li").nth(1)).to_have_text("version 2 (current)")
    assert api(dashboard, "/api/v1/agents/versioned")[1]["version"] == 2
    # A module that is not one: the API's words.
    page.get_by_label("Upgrade with a new module").set_input_files(
        {"name": "bad.wasm", "mimeType": "application/wasm", "buffer": b"not wasm at all"}
    )
    expect(page.locator("#error")).to_contain_text("WebAssembly")
    page.get_by_role("button", name="Roll back to 1").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back").click()
    expect(page.locator("#versions li").nth(0)).to_have_text("version 1 (current)")
    assert api(dashboard, "/api/v1/agents/versioned")[1]["version"] == 1
    api(dashboard, "/api/v1/agents/versioned", method="DELETE")
