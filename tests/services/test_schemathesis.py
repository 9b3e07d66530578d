"""Schemathesis against the live test stack: every operation, with an admin key and
with the operator token, bounded (25 examples per operation, fixed seed). Zero 5xx and
zero responses that disagree with the OpenAPI document (status, content type, headers,
body schema)."""

from __future__ import annotations

import asyncio

import pytest

EXAMPLES = 25

# The conformance checks (the stateful ones need links we do not declare).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def _fuzz(schema_url: str, base_url: str, token: str) -> list[str]:
    import hypothesis
    import schemathesis
    from schemathesis import checks as st_checks

    checks = [getattr(st_checks, name) for name in CHECKS]
    schema = schemathesis.openapi.from_url(schema_url)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,  # a fixed seed: the same cases every run
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case, operation=operation) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=30)

        try:
            run()
        except Exception as exc:  # one line per operation that failed, then the details
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("who", ["admin key", "operator token"])
async def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(who, base_url, tenants, settings):
    if who == "admin key":
        token = (await tenants.create()).key
    else:
        token = settings.operator_token.get_secret_value()
    # In a thread: the API under test is served by this test's event loop.
    failures = await asyncio.to_thread(_fuzz, f"{base_url}/schema/openapi.json", base_url, token)
    assert not failures, "\n\n".join(failures)
