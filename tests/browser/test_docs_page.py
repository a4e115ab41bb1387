"""``/docs`` as a person uses it: a real server, headless Chromium, the network closed.

``taskvault serve`` runs on SQLite in a temporary folder with an HS256 secret.
Debian's Chromium, driven by Playwright (no ``playwright install``: the
browser is the system's), opens ``/docs``, pastes a token in "Authorize", and
creates and lists tasks through "Try it out". Every request to a host other
than 127.0.0.1 is refused, so the page must render from the server alone.
The last state of the page is saved to ``var/docs-screenshot.png``.

Chromium missing: the test fails under CI (``CI=true``; ``.ci/run`` installs
it) and skips elsewhere, saying how to install it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect, sync_playwright

from tests.support import SECRET, TASK_KEYS
from tests.support.prerequisites import missing_prerequisite
from tests.support.processes import LOOPBACK, TASKVAULT, TaskvaultServer

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "var" / "docs-screenshot.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "apt-get update && apt-get install -y chromium chromium-driver"
STEP_TIMEOUT_MS = 15_000
TITLE = "Written in Swagger UI"
WRITABLE_FIELDS = {"title", "description", "completed", "priority", "due_at"}


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; missing, it fails under CI and skips elsewhere."""
    if not os.access(CHROMIUM, os.X_OK):
        missing_prerequisite(
            f"{CHROMIUM} not found: install it with `{INSTALL_HINT}` (.ci/run does so)"
        )
    return CHROMIUM


@dataclass(frozen=True)
class Server:
    base: str
    cwd: Path
    env: dict[str, str]

    def token(self, sub: str) -> str:
        """A token from ``taskvault token``, as a person trying the API gets one."""
        result = subprocess.run(
            [TASKVAULT, "token", sub, "--ttl", "600"],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``taskvault serve`` on SQLite in ``tmp_path``, on a free loopback port."""
    with TaskvaultServer(
        tmp_path,
        "--host",
        LOOPBACK,
        TASKVAULT_JWT_SECRET=SECRET,
        TASKVAULT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'taskvault.db'}",
    ) as process:
        yield Server(process.base, tmp_path, process.env)


@dataclass
class Browser:
    page: Page
    requested: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[Browser]:
    """A fresh Chromium profile whose requests may reach 127.0.0.1 only."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},
            timeout=30_000,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            state = Browser(page)

            def loopback_only(route: Route) -> None:
                url = route.request.url
                state.requested.append(url)
                if urlsplit(url).hostname == LOOPBACK:
                    route.continue_()
                else:
                    state.refused.append(url)
                    route.abort("blockedbyclient")

            context.route("**/*", loopback_only)
            yield state
        finally:
            context.close()


def _operation(page: Page, operation_id: str) -> Locator:
    """Expand a ``tasks`` operation and press "Try it out"."""
    block = page.locator(f"#operations-tasks-{operation_id}")
    block.locator(".opblock-summary-control").click()
    block.get_by_role("button", name="Try it out").click()
    return block


def _documented_example(block: Locator, status: int) -> Any:
    """The example body Swagger UI derived from the documented schema for ``status``."""
    example = block.locator(f'tr.response[data-code="{status}"] pre.microlight').first
    return json.loads(example.inner_text())


def _execute(block: Locator) -> tuple[int, Any]:
    """Press "Execute" and read the live response's status and JSON body off the page."""
    block.get_by_role("button", name="Execute").click()
    live = block.locator(".live-responses-table tr.response")
    live.wait_for()
    status = int(live.locator(".response-col_status").inner_text().strip())
    body = live.locator(".highlight-code pre").first.inner_text()
    return status, json.loads(body)


def test_docs_page_authorizes_creates_and_lists_with_the_network_closed(
    server: Server, browser: Browser
) -> None:
    page = browser.page
    token = server.token("alice")
    page.goto(f"{server.base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("taskvault")

    # Swagger UI 5 or newer (4.x cannot render OpenAPI 3.1), from the server itself.
    version: str = page.evaluate("window.versions.swaggerUI.version")
    assert int(version.split(".")[0]) >= 5, version
    expect(page.locator(".info .version-stamp")).to_have_text("OAS 3.1")

    # Every operation of /openapi.json is on the page, and Swagger UI found no error.
    spec = httpx.get(f"{server.base}/openapi.json", timeout=10).json()
    operations = [
        (operation["tags"][0], operation["operationId"])
        for item in spec["paths"].values()
        for operation in item.values()
    ]
    assert ("tasks", "createTask") in operations
    assert ("tasks", "listTasks") in operations
    for tag, operation_id in operations:
        expect(page.locator(f"#operations-{tag}-{operation_id}")).to_have_count(1)
    expect(page.locator(".errors-wrapper")).to_have_count(0)

    # Authorize: paste the bearer token.
    page.locator(".auth-wrapper button.authorize").click()
    modal = page.locator(".modal-ux")
    modal.locator("#auth-bearer-value").fill(token)
    modal.get_by_role("button", name="Apply credentials").click()
    expect(modal).to_contain_text("Authorized")
    modal.get_by_role("button", name="Close").click()
    expect(page.locator(".auth-wrapper button.authorize")).to_have_class("btn authorize locked")

    # Create a task: Try it out, edit the body, Execute.
    create = _operation(page, "createTask")
    create.locator('tr[data-param-name="user_id"] input').fill("alice")
    body = create.locator("textarea.body-param__text")
    assert set(json.loads(body.input_value())) == WRITABLE_FIELDS
    body.fill(json.dumps({"title": TITLE, "priority": "high"}))
    status, created = _execute(create)
    assert status == 201, created
    assert created["title"] == TITLE
    assert created["priority"] == "high"
    assert created["user_id"] == "alice"
    assert created["version"] == 1
    assert set(_documented_example(create, 201)) == set(created) == TASK_KEYS

    # persistAuthorization: the token survives a reload of the page.
    page.reload()
    expect(page.locator(".auth-wrapper button.authorize")).to_have_class("btn authorize locked")

    # List tasks through the page: the created title is in the response shown.
    listing = _operation(page, "listTasks")
    listing.locator('tr[data-param-name="user_id"] input').fill("me")
    status, listed = _execute(listing)
    assert status == 200, listed
    assert listed == [created]
    expect(listing.locator(".live-responses-table")).to_contain_text(TITLE)
    documented = _documented_example(listing, 200)
    assert isinstance(documented, list)
    assert set(documented[0]) == TASK_KEYS

    # The screenshot shows the list call as a person sees it: curl, URL, response.
    SCREENSHOT.parent.mkdir(exist_ok=True)
    listing.locator(".responses-wrapper").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=SCREENSHOT)

    # The server agrees with what the page showed.
    direct = httpx.get(
        f"{server.base}/api/alice/tasks",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert direct.json() == [created]

    # The page rendered and worked with nothing but loopback: it asked no other host.
    assert browser.refused == []
    assert all(urlsplit(url).hostname == LOOPBACK for url in browser.requested)
    assert f"{server.base}/docs/static/swagger-ui-bundle.js" in browser.requested
    assert f"{server.base}/docs/static/swagger-ui.css" in browser.requested
    assert SCREENSHOT.stat().st_size > 10_000
