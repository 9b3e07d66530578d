"""The unit tier: pure modules, no Postgres, S3, Stripe fake or API server.

``pytest tests/unit`` runs in seconds. The stack fixtures of ``tests/conftest.py``
are overridden here so that a unit test asking for one (directly or through
``hangar``, ``http``, ``tenants``…) fails at once instead of starting the stack:
such a test belongs beside the integration tests."""

from __future__ import annotations

import pytest

_MOVE_IT = "unit tests run without {}: put this test beside the integration tests in tests/"


@pytest.fixture(scope="session")
def stack():
    pytest.fail(_MOVE_IT.format("Postgres or S3"))


@pytest.fixture(scope="session")
def localstripe():
    pytest.fail(_MOVE_IT.format("the Stripe fake"))
