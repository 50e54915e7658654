"""Broker liveness probe: one Kafka ApiVersions round trip with a deadline.

Why: a broker that hangs (frozen process, full disk, network black hole) does not make the
Kafka clients log anything for a long time; fetches simply wait. The worker probes the
bootstrap servers every few seconds so that a stall shows in /metrics (``teilhabe_broker_up``)
and in the log within seconds, while the consumer waits for the broker to come back.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time

from pipeline.ops.exporter import PipelineMetrics

log = logging.getLogger("teilhabe.broker")

API_VERSIONS = 18
CLIENT_ID = b"teilhabe-probe"


def _request(correlation_id: int) -> bytes:
    body = struct.pack(">hhih", API_VERSIONS, 0, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    return struct.pack(">i", len(body)) + body


async def probe_one(
    host: str, port: int, timeout_s: float, ssl_context: ssl.SSLContext | None = None
) -> float:
    """Round-trip time (s) of an ApiVersions request to ``host:port`` (over TLS with
    ``ssl_context``, as the Kafka clients connect); raises on failure."""
    started = time.perf_counter()
    connect = asyncio.open_connection(
        host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
    )
    reader, writer = await asyncio.wait_for(connect, timeout_s)
    try:
        correlation_id = int(started * 1000) & 0x7FFFFFFF
        writer.write(_request(correlation_id))
        await writer.drain()
        left = max(0.01, timeout_s - (time.perf_counter() - started))
        head = await asyncio.wait_for(reader.readexactly(8), left)
        _size, got = struct.unpack(">ii", head)
        if got != correlation_id:
            raise ConnectionError(f"unexpected answer from {host}:{port}")
        return time.perf_counter() - started
    finally:
        writer.close()


async def probe(
    bootstrap: str, timeout_s: float, ssl_context: ssl.SSLContext | None = None
) -> float:
    """Round-trip time of the first bootstrap server that answers; raises the last error
    (TimeoutError, OSError) when none does. ApiVersions needs no SASL authentication."""
    error: BaseException = ConnectionError(f"no bootstrap servers in {bootstrap!r}")
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        host, _, port = server.rpartition(":")
        try:
            return await probe_one(
                host.strip("[]") or "localhost", int(port or 9092), timeout_s, ssl_context
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            error = exc
    raise error


class BrokerWatch:
    """Probes the broker on each ``check`` and reports stalls in metrics and the log (once
    per ``log_interval_s`` while it lasts, and once when it ends)."""

    def __init__(
        self,
        bootstrap: str,
        metrics: PipelineMetrics,
        timeout_s: float = 3.0,
        log_interval_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.ssl_context = ssl_context
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.log_interval_s = log_interval_s
        self.down_since: float | None = None
        self._logged_at = 0.0

    async def check(self) -> bool:
        """One probe; True when the broker answered."""
        try:
            rtt = await probe(self.bootstrap, self.timeout_s, self.ssl_context)
        except Exception as exc:  # noqa: BLE001 - every failure means "not answering"
            now = time.monotonic()
            self.metrics.broker_up.set(0)
            self.metrics.client_problems.labels("kafka").inc()
            if self.down_since is None:
                self.down_since = now
            if now - self._logged_at >= self.log_interval_s:
                self._logged_at = now
                log.error(
                    "kafka broker not answering for %.0f s (%s: %s); consumption waits for it",
                    now - self.down_since,
                    type(exc).__name__,
                    exc,
                )
            return False
        if self.down_since is not None:
            log.warning(
                "kafka broker answers again after %.0f s", time.monotonic() - self.down_since
            )
            self.down_since, self._logged_at = None, 0.0
        self.metrics.broker_up.set(1)
        self.metrics.broker_probe_seconds.set(rtt)
        return True
