"""aiohttp's server, hardened for the webhook endpoint (docs/connectors.md, "Limits"):

* one access line per request (route, status, bytes, duration, request id), never a header,
  a body or another string the client chose; aiohttp's own access and error logging replaced;
* malformed requests (the parser's errors) answered with JSON, logged at most once per client
  address and interval without their bytes;
* a header timeout (408), an idle keep-alive timeout, a cap on open connections (503 with
  ``Retry-After``); no ``Server`` header naming aiohttp; 404/405 answered with JSON.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from pipeline.sources.webhooks.logs import LimitedLog
from pipeline.sources.webhooks.metrics import WebhookMetrics
from pipeline.sources.webhooks.payload import SOURCES
from pipeline.sources.webhooks.ratelimit import client_key

_CLIENT_FAILURES = (RequestPayloadError, HttpProcessingError, ConnectionError)
SERVER_NAME = "teilhabe"
OTHER = "other"  # the source label of what no route matched (404, 405, parser errors, ...)
#: Reason codes of the answers no route gives.
_REASONS = {404: "not_found", 405: "method_not_allowed", 408: "timeout", 413: "too_large"}


@dataclass(frozen=True)
class Limits:
    """Timeouts and the connection cap (``TEILHABE_WEBHOOK_*``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    max_connections: int = 256


def route_of(request: BaseRequest) -> str:
    """The source of the matched route, ``other`` when none (never a client's string)."""
    info = getattr(request, "_match_info", None)
    name = getattr(getattr(info, "route", None), "name", None)
    return name if name in SOURCES or name == "healthz" else OTHER


def request_id(request: BaseRequest) -> str:
    """The id of a request in the access line and the ``X-Request-Id`` answer header."""
    rid = request.get("rid")
    if not isinstance(rid, str):
        rid = request["rid"] = secrets.token_hex(6)
    return rid


def json_body(error: str) -> bytes:
    return orjson.dumps({"error": error})


class Guard:
    """What the connections of one server share: the open-connection count, the metrics, the
    access log and the rate-limited log of malformed requests."""

    def __init__(self, limits: Limits, metrics: WebhookMetrics, logger: logging.Logger) -> None:
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
        self.limited = LimitedLog(logger)
        self.open = 0

    def access(self, request: BaseRequest, response: StreamResponse, duration_s: float) -> None:
        """Count the answer and write its access line."""
        route = route_of(request)
        source = route if route in SOURCES else OTHER
        status = response.status
        size_in = request.get("bytes", 0)
        size_out = getattr(response, "body_length", 0)
        self.metrics.requests.labels(source, str(status)).inc()
        if status >= 500 and status != 503:
            level = logging.ERROR
        elif status in (400, 408, 413, 503) and route != OTHER:
            level = logging.INFO
        else:
            level = logging.DEBUG
        self.logger.log(
            level,
            "webhook source=%s status=%d events=%d error=%s in=%d out=%d ms=%.1f id=%s",
            route,
            status,
            request.get("events", 0),
            request.get("error", "-"),
            size_in,
            size_out,
            duration_s * 1000,
            request_id(request),
        )

    def failure(self, exc: BaseException | None) -> None:
        """Log a bug (an exception no answer foresaw): its type and place, never its message
        (it may quote a request), once per place and interval."""
        where = "-"
        if exc is not None and exc.__traceback__ is not None:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        name = type(exc).__name__ if exc is not None else "-"
        key = f"internal:{name}:{where}"
        self.limited.log(key, logging.ERROR, "webhook internal error=%s at=%s", name, where)

    def refused(self, peer: str, status: int, error: str) -> None:
        """Count an answer given without a request (over the cap, a header timeout)."""
        self.metrics.requests.labels(OTHER, str(status)).inc()
        msg = "webhook %s client=%s status=%d"
        self.limited.log(f"{peer}:{status}", logging.WARNING, msg, error, peer, status)


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with the guard's logging, timeouts and connection cap."""

    def __init__(self, manager: web.Server, *, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._logging_enabled = True  # log_access below is ours: always wanted, with a time
        self._header_timer: asyncio.TimerHandle | None = None
        self._counted = False

    @property
    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return client_key(peer[0] if isinstance(peer, tuple) and peer else None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard
        guard.open += 1
        self._counted = True
        if guard.open > guard.limits.max_connections:
            guard.refused(self._peer, 503, "overloaded")
            self._answer_raw(503, "overloaded", retry_after=1)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._guard.open -= 1
            self._counted = False
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # between requests: none parsed yet, or start() awaits the next (not a body's bytes)
        waiting = not self._messages and (
            self._request_count == 0 or (self._waiter is not None and not self._waiter.done())
        )
        if data and waiting and self._header_timer is None and not self._force_close:
            self._header_timer = self._loop.call_later(
                self._guard.limits.header_timeout_s, self._headers_overdue
            )
        super().data_received(data)
        if self._messages:  # a request's headers are complete (or failed to parse)
            self._stop_header_timer()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self._messages or self._current_request is not None or self.transport is None:
            return  # a request is under way: its body has its own timeout
        self._guard.refused(self._peer, 408, "header_timeout")
        self._answer_raw(408, "header_timeout")

    def _answer_raw(self, status: int, error: str, retry_after: int | None = None) -> None:
        """Answer outside of any request (none was read) and close the connection."""
        body = json_body(error)
        head = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            f"Server: {SERVER_NAME}",
        ]
        if retry_after is not None:
            head.append(f"Retry-After: {retry_after}")
        if self.transport is not None:
            self.transport.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)
        self.force_close()

    def log_access(
        self, request: BaseRequest, response: StreamResponse, time: float | None
    ) -> None:
        elapsed = self._loop.time() - time if time is not None else 0.0
        self._guard.access(request, response, elapsed)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A failure outside the routes: a client's (a body that cannot be decoded while the
        rest of a refused request is drained, a lost connection) once per client address and
        interval; else a bug. Its type and place, never its message."""
        exc = kw.get("exc_info")
        if isinstance(exc, _CLIENT_FAILURES):
            msg = "webhook connection failed client=%s error=%s"
            name = type(exc).__name__
            self._guard.limited.log(f"{self._peer}:conn", logging.WARNING, msg, self._peer, name)
            return
        self._guard.failure(exc if isinstance(exc, BaseException) else None)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        """A malformed request (400) or a failure outside the routes (500), answered with JSON
        and logged without its bytes, once per client address and interval."""
        if status >= 500:
            status, error = 500, "internal"
            self._guard.failure(exc)
        else:
            error = "bad_request"
            self._guard.limited.log(
                f"{self._peer}:bad_request",
                logging.WARNING,
                "webhook malformed request client=%s status=%d parser_error=%s",
                self._peer,
                status,
                type(exc).__name__ if exc is not None else "-",
            )
        if request.writer.output_size > 0:
            raise ConnectionError("the answer is under way: no error answer possible")
        request["error"] = error
        resp = web.Response(
            status=status,
            body=json_body(error),
            content_type="application/json",
            headers={"Server": SERVER_NAME, "X-Request-Id": request_id(request)},
        )
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """aiohttp's low-level server, making ``GuardedHandler`` connections."""

    def __init__(self, *args: Any, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, guard=self._guard, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving ``GuardedHandler`` connections with the guard's limits."""

    def __init__(self, app: web.Application, guard: Guard, **kwargs: Any) -> None:
        limits = guard.limits
        kwargs.setdefault("keepalive_timeout", limits.keepalive_timeout_s)
        kwargs.setdefault("lingering_time", 2.0)  # of an unread body after a refusal
        kwargs.setdefault("access_log", guard.logger)
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return GuardedServer(
            made.request_handler,
            guard=self.guard,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,  # noqa: SLF001 - the loop the app was set up on
            **made._kwargs,  # noqa: SLF001 - the handler settings AppRunner resolved
        )


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[StreamResponse]]
) -> StreamResponse:
    """aiohttp's own refusals (404, 405, ...) as JSON like the routes' answers."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _REASONS.get(exc.status, "bad_request")
        request["error"] = error
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return web.Response(
            status=exc.status,
            body=json_body(error),
            content_type="application/json",
            headers=headers,
        )


async def server_headers(request: web.Request, response: StreamResponse) -> None:
    """``on_response_prepare``: our ``Server`` name, not aiohttp's version; the request id."""
    response.headers["Server"] = SERVER_NAME
    response.headers["X-Request-Id"] = request_id(request)
