"""localstripe, the stateful Stripe fake, as its own process for the tests:

    python -m tests.localstripe_server PORT

Unlike ``localstripe --port`` it listens on loopback only, and keeps its state in
memory instead of pickling the whole store to the shared /tmp/localstripe.pickle
after every write (which two test runs on one machine would fight over).

localstripe 1.15 only creates invoices for subscriptions. Real Stripe also creates
one-off invoices from a customer's pending invoice items
(``POST /v1/invoices customer=... pending_invoice_items_behavior=include``), which is
what Hangar sends; ``_one_off_invoices`` teaches the fake that one request, using
its own Invoice class (which already collects pending items), and nothing else.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx


def _one_off_invoices(resources) -> None:
    original = resources.Invoice._api_create.__func__

    def create(cls, customer=None, subscription=None, pending_invoice_items_behavior=None, **data):
        if subscription is None and pending_invoice_items_behavior == "include":
            unexpected = set(data) - {"description", "metadata"}
            if unexpected:
                raise resources.UserError(400, "Unexpected " + ", ".join(sorted(unexpected)))
            return cls(customer=customer, **data)
        return original(
            cls,
            customer=customer,
            subscription=subscription,
            pending_invoice_items_behavior=pending_invoice_items_behavior,
            **data,
        )

    resources.Invoice._api_create = classmethod(create)


def main() -> None:
    from aiohttp import web
    from localstripe import resources, server

    resources.store.dump_to_disk = lambda: None
    _one_off_invoices(resources)
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


class LocalStripe:
    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.localstripe_server", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                httpx.get(f"{self.url}/v1/customers", auth=("sk_test_ready", ""), timeout=1)
                return self.url
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    raise RuntimeError("localstripe exited at start") from None
                time.sleep(0.05)
        raise RuntimeError("localstripe did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


if __name__ == "__main__":
    main()
