"""A real node (`caxton serve` with the example agents and authentication on) and Debian's
chromium driven by Playwright, for the dashboard's browser tests."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from caxton.security import TokenIssuer
from tests.nodeproc import NodeProcess, write_config

CHROMIUM = "/usr/bin/chromium"
SECRET = "dashboard-test-secret-of-forty-bytes-or-so"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the tests put the screenshots that docs/dashboard.md shows, when asked to
#: (``CAXTON_UPDATE_SCREENSHOTS=1``); otherwise they are taken into a temporary directory, so
#: a test run leaves the checkout as it was.
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"


@dataclass(frozen=True)
class Dashboard:
    """The node under test: its dashboard's URL and a valid token."""

    base: str
    token: str
    node: NodeProcess


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    directory = tmp_path_factory.mktemp("dashboard-node")
    config = write_config(
        directory,
        f'[security]\nauth_enabled = true\njwt_secret = "{SECRET}"\n',
        log_level="info",
    )
    node = NodeProcess(config, args=["serve", "--examples", "--config", str(config)])
    with node.start(timeout=60):
        token = TokenIssuer(SECRET, default_expiry=3600).create("dashboard-test")
        yield Dashboard(node.url("api", ""), token, node)
        node.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for one module's tests. Not for the session: Playwright's sync API keeps an
    event loop running on this thread while it is open, and the asyncio tests collected after
    a UI module could not run their own."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is missing: scripts/test installs it (apt-get install chromium)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(
    browser: Browser,
    dashboard: Dashboard | str,
    *,
    dark: bool = False,
    width: int = 1280,
) -> Page:
    """A fresh tab (its own session storage) on the dashboard, logged in: with the test's
    token for a `Dashboard`; with none for a node's base URL (authentication off: the page
    opens without asking)."""
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        color_scheme="dark" if dark else "light",
    )
    page = context.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    _VIOLATIONS[id(page)] = violations
    base = dashboard.base if isinstance(dashboard, Dashboard) else dashboard
    page.goto(base + "/ui/")
    if isinstance(dashboard, Dashboard):
        page.get_by_label("Token or API key").fill(dashboard.token)
        page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Pages").wait_for()
    return page


#: id(page) -> the Content-Security-Policy violations its console reported.
_VIOLATIONS: dict[int, list[str]] = {}


def close_page(page: Page) -> None:
    """Close the tab's context, after checking that the page kept to its own
    Content-Security-Policy (no inline styles or scripts, nothing from elsewhere)."""
    violations = _VIOLATIONS.pop(id(page), [])
    page.context.close()
    assert not violations, violations


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    tab = open_page(browser, dashboard)
    yield tab
    close_page(tab)


@pytest.fixture(scope="session", autouse=True)
def _shots(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _SHOTS
    update = os.environ.get("CAXTON_UPDATE_SCREENSHOTS", "") not in ("", "0")
    _SHOTS = DOCS_SHOTS if update else tmp_path_factory.mktemp("screenshots")


_SHOTS: Path | None = None


def shot(page: Page, name: str) -> Path:
    """A screenshot of the whole page (for docs/dashboard.md); its path."""
    assert _SHOTS is not None
    _SHOTS.mkdir(parents=True, exist_ok=True)
    path = _SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def api(
    dashboard: Dashboard,
    path: str,
    token: str | None = None,
    *,
    method: str = "GET",
    body: Any = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """Call the node's API with the test's token (or `token`): (status, JSON body). A `body`
    that is not bytes is sent as JSON."""
    bearer = dashboard.token if token is None else token
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    req = urllib.request.Request(dashboard.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
