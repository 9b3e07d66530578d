"""A TCP proxy in front of the control plane, for tests: it can go away (connections
refused, as when the network to the control plane drops) and can stall a blob
download after N body bytes, so a test can kill the node in the middle of a pull."""

from __future__ import annotations

import asyncio
import contextlib

from services.embedded import free_port


class Proxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.stall_blob_after: int | None = None
        self.stalled = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self.server is not None:
            self.server.close()
            for w in list(self.writers):
                w.close()
            await self.server.wait_closed()
            self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        first = await reader.read(65536)
        blob = b"/blob" in first.split(b"\r\n", 1)[0]
        up_writer.write(first)

        async def pump_up():
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def pump_down():
            head, body = b"", 0
            limit = self.stall_blob_after if blob else None
            while data := await up_reader.read(65536):
                if limit is not None:
                    if b"\r\n\r\n" not in head:
                        head += data
                        if b"\r\n\r\n" in head:
                            h, _, rest = head.partition(b"\r\n\r\n")
                            writer.write(h + b"\r\n\r\n")
                            data = rest
                        else:
                            continue
                    allowed = max(0, limit - body)
                    writer.write(data[:allowed])
                    body += min(len(data), allowed)
                    await writer.drain()
                    if body >= limit:
                        self.stalled.set()
                        await asyncio.Event().wait()  # hold the connection open, send nothing more
                    continue
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(pump_up()), asyncio.create_task(pump_down())]
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            w.close()
            self.writers.discard(w)
