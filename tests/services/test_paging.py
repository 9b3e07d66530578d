"""Every list pages the same way: ``limit``, ``after``, and a ``Link: <...>; rel="next"``
header while there are more; the body stays the list (what the CLI and console read)."""

from __future__ import annotations

import re


def _next(resp) -> str | None:
    link = resp.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


async def test_lists_page_with_limit_after_and_a_next_link(tenants):
    t = await tenants.create()
    for i in range(5):
        resp = await t.request("POST", "/v1/enrollment-tokens/", json={"name": f"tok-{i}"})
        assert resp.status_code == 201

    seen: list[str] = []
    url: str | None = "/v1/enrollment-tokens/?limit=2"
    pages = 0
    while url:
        resp = await t.request("GET", url)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()) <= 2
        seen += [tok["name"] for tok in resp.json()]
        url = _next(resp)
        pages += 1
    assert pages == 3
    assert seen == [f"tok-{i}" for i in range(5)]  # every item once, in order

    everything = await t.request("GET", "/v1/enrollment-tokens/")
    assert "link" not in everything.headers and len(everything.json()) == 5


async def test_the_same_convention_on_keys_and_nodes_and_a_bad_cursor_is_a_400(tenants):
    t = await tenants.create()
    await t.key_with("read")
    first = await t.request("GET", "/v1/keys/", params={"limit": 1})
    assert len(first.json()) == 1 and _next(first)
    second = await t.request("GET", _next(first))
    assert second.json()[0]["id"] != first.json()[0]["id"]

    nodes = await t.request("GET", "/v1/nodes/", params={"limit": 1})
    assert nodes.status_code == 200 and "link" not in nodes.headers  # no nodes, no next

    bad = await t.request("GET", "/v1/keys/", params={"after": "!!not-a-cursor"})
    assert bad.status_code == 400
    assert "Link header" in bad.json()["error"]
