"""localstripe, the stateful Stripe fake, as its own process for the tests:

    python -m tests.localstripe_server PORT

Unlike ``localstripe --port`` it listens on loopback only, and keeps its state in
memory instead of pickling the whole store to the shared /tmp/localstripe.pickle
after every write (which two test runs on one machine would fight over).
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx


def main() -> None:
    from aiohttp import web
    from localstripe import resources, server

    resources.store.dump_to_disk = lambda: None
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


class LocalStripe:
    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.localstripe_server", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
