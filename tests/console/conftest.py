"""A real browser for the console tests: Debian's chromium driven by Playwright
(Playwright never downloads a browser here; `.ci/run` installs chromium with apt)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.node_runtime.conftest import nodes, smollm2_tenant  # noqa: F401  (fixtures)

CHROMIUM = os.environ.get("HANGAR_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
def artifacts(request) -> Path:
    """Screenshots and downloads, kept after the run (gitignored) so people can look."""
    root = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
    path = root / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


class Console:
    """One signed-in browser session, with a screenshot helper."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str, shots: Path):
        self.context, self.page, self.base_url, self.shots = context, page, base_url, shots

    async def goto(self, path: str):
        return await self.page.goto(self.base_url + path)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    async def sign_in(self, secret: str) -> None:
        await self.goto("/console/login")
        await self.page.get_by_label("API key or operator token").fill(secret)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.wait_for_load_state()

    async def csrf(self) -> str:
        """The token a page's forms carry (a forger with the cookie alone lacks it)."""
        return await self.page.locator("input[name=_csrf_token]").first.get_attribute("value")


@pytest.fixture
async def console(browser, base_url, artifacts):
    async def open_console(secret: str | None = None) -> Console:
        context = await browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        opened.append(context)
        c = Console(context, await context.new_page(), base_url, artifacts)
        if secret:
            await c.sign_in(secret)
        return c

    opened: list[BrowserContext] = []
    yield open_console
    for context in opened:
        await context.close()
