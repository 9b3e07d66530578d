"""A small Stripe REST client on httpx: form-encoded bodies, Idempotency-Key on every
POST, retries with exponential backoff where a retry cannot create a duplicate.

A POST is retried only when it certainly did not reach Stripe (the connection was
never made) or Stripe answered 5xx/429 (Stripe then honours the idempotency key).
When a POST may have reached Stripe but its answer was lost, ``StripeUncertain`` is
raised: the caller must look the object up before creating it again, because the
fake we test against (localstripe) ignores idempotency keys.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from core.settings import StripeSettings

log = logging.getLogger("hangar.stripe")

# The API version this client is written for, sent on every request so an account whose
# default version moves on cannot change the shapes we read. Basil removed
# ``invoice.payment_intent``: payments are read from ``invoice.payments`` (see stripe_sync).
STRIPE_API_VERSION = "2025-03-31.basil"

# Errors raised before a request could have been sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class StripeError(Exception):
    """Stripe refused the request (4xx): retrying the same request will not help."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(f"Stripe {status}: {message}")
        self.status, self.message, self.code = status, message, code


class StripeUnavailable(Exception):
    """Stripe could not be reached, or kept failing, after all retries."""


class StripeUncertain(StripeUnavailable):
    """A POST may or may not have been applied: its answer never arrived."""


def form(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Stripe's form encoding: ``metadata[key]=value``, ``items[0][price]=...``."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if value is None:
            continue
        if isinstance(value, dict):
            out += form(value, name)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                out += (
                    form(item, f"{name}[{i}]")
                    if isinstance(item, dict)
                    else [(f"{name}[{i}]", str(item))]
                )
        elif isinstance(value, bool):
            out.append((name, "true" if value else "false"))
        else:
            out.append((name, str(value)))
    return out


class StripeClient:
    def __init__(
        self, settings: StripeSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.settings = settings
        self._http: httpx.AsyncClient | None = None
        self._transport = transport

    @property
    def enabled(self) -> bool:
        return bool(self.settings.api_key.get_secret_value())

    def _client(self) -> httpx.AsyncClient:
        # Built on first use, inside the running loop, never at import time.
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.settings.api_base,
                auth=(self.settings.api_key.get_secret_value(), ""),
                headers={"Stripe-Version": STRIPE_API_VERSION},
                timeout=self.settings.timeout_seconds,
                transport=self._transport,
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._request("GET", path, params=params or {}, key=None)

    async def post(
        self, path: str, params: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        return await self._request("POST", path, params=params, key=idempotency_key)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self._request("DELETE", path, params={}, key=None)

    async def _request(
        self, method: str, path: str, *, params: dict[str, Any], key: str | None
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        encoded = form(params)
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                if method == "POST":
                    resp = await self._client().post(path, data=dict(encoded), headers=headers)
                else:
                    resp = await self._client().request(method, path, params=encoded)
            except _NOT_SENT as exc:
                if last:
                    raise StripeUnavailable(
                        f"cannot reach Stripe at {self.settings.api_base}: {exc}"
                    ) from exc
            except httpx.TransportError as exc:
                if method == "POST":
                    raise StripeUncertain(
                        f"{method} {path}: the answer was lost ({exc!r})"
                    ) from exc
                if last:
                    raise StripeUnavailable(f"{method} {path} failed: {exc!r}") from exc
            else:
                if resp.status_code < 400:
                    return resp.json()
                if resp.status_code < 500 and resp.status_code != 429:
                    raise _error(resp)
                if last:
                    raise StripeUnavailable(
                        f"{method} {path}: Stripe answered {resp.status_code} {attempts} times"
                    )
            delay = self.settings.backoff_seconds * 2**attempt
            log.info("stripe %s %s failed; retrying in %.1fs", method, path, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _error(resp: httpx.Response) -> StripeError:
    try:
        err = resp.json().get("error", {})
        return StripeError(resp.status_code, err.get("message") or resp.text, err.get("code"))
    except ValueError:
        return StripeError(resp.status_code, resp.text)
