"""A TLS terminator for tests: accepts TLS on a loopback port and forwards the plain bytes to a
target port (the embedded broker), so that the broker is reachable over TLS only. Runs an
asyncio loop in a thread; optionally requires a client certificate (mutual TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from types import TracebackType

from pipeline.dev.broker import free_port


class TlsTerminator:
    """``with TlsTerminator(ctx, target_port) as t: t.port`` — TLS on ``t.port``."""

    def __init__(self, server_context: ssl.SSLContext, target_port: int, port: int = 0) -> None:
        self.context = server_context
        self.target_port = target_port
        self.port = port or free_port()
        self.connections = 0  # TLS sessions forwarded (handshake done)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self.context
        )

    def __enter__(self) -> TlsTerminator:
        self._loop.set_exception_handler(lambda loop, ctx: None)  # failed handshakes: quiet
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
