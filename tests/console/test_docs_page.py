"""The API docs page renders with no internet: its JavaScript and CSS come from the
package, so an air-gapped operator sees the operations, not a blank page."""

from __future__ import annotations

from urllib.parse import urlparse


async def test_docs_page_renders_with_every_outside_request_blocked(browser, base_url, artifacts):
    context = await browser.new_context()
    outside: list[str] = []

    async def only_local(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_local)
    page = await context.new_page()
    try:
        for path in ("/schema", "/schema/swagger"):
            await page.goto(base_url + path)
            await page.locator(".opblock").first.wait_for(timeout=30_000)
            assert await page.locator(".opblock").count() > 30
            assert await page.get_by_text("/v1/uploads/{upload_id}").count() >= 1
        await page.screenshot(path=str(artifacts / "docs.png"))
    finally:
        await context.close()
    assert outside == []
