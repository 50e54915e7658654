"""The HTTP ingest endpoint, served by the worker (aiohttp on Faust's event loop).

Routes: ``POST /v1/events`` (bearer token; a contract event or an envelope),
``POST /v1/slack/events`` (Slack Events API, signed), ``POST /v1/mattermost`` (outgoing webhook
token), ``GET /healthz``. A request is answered 200/202 only once Kafka has confirmed what it
carried; its events go to the input topic as envelopes whose person ids are already
pseudonymised (``"pseudonymised": true``). Credentials are checked before a body is read (a
Slack signature, or a Mattermost token sent in the body only, needs the body: it is read under
the size limit and the body timeout). Refusals (docs/connectors.md, "Limits"): 401 signature or
token, 413 body above ``TEILHABE_WEBHOOK_MAX_BYTES``, 408 headers or body too slow, 400
malformed (reason in the answer; a redacted, pseudonymised dead letter), 429 over the rate of
the credential or, unauthenticated, of the client address (with ``Retry-After``), 503 Kafka did
not confirm or too many connections. A 500 is a bug. Bodies, headers and message texts are
never logged (``pipeline.sources.webhooks.server``: one access line per request).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion11

from agents.delivery import Outgoing
from agents.runtime import Runtime
from pipeline.contract.records import TooLarge, value_budget
from pipeline.errors import InvalidEvent
from pipeline.metrics.enrich import decode_message
from pipeline.sources.webhooks.credentials import (
    Credentials,
    bearer_token,
    header_token,
    load_credentials,
    token_matches,
)
from pipeline.sources.webhooks.dedup import RecentIds
from pipeline.sources.webhooks.generic import (
    ENVELOPE_HEAD,
    ENVELOPE_TAIL,
    envelopes,
    outgoing,
    redacted,
    redacted_events,
    validate_all,
)
from pipeline.sources.webhooks.mattermost import map_mattermost, parse_mattermost
from pipeline.sources.webhooks.metrics import WebhookMetrics
from pipeline.sources.webhooks.payload import EVENTS, MATTERMOST, SLACK, Mapped, parse_json_object
from pipeline.sources.webhooks.ratelimit import RateLimiter, client_key
from pipeline.sources.webhooks.server import (
    Guard,
    GuardedRunner,
    Limits,
    json_errors,
    server_headers,
)
from pipeline.sources.webhooks.slack import map_slack_callback

log = logging.getLogger("teilhabe.webhooks")

SEND_TIMEOUT_S = 10.0  # Kafka's confirmation; Slack itself gives up after 3 s and retries
ROUTES = {EVENTS: "/v1/events", SLACK: "/v1/slack/events", MATTERMOST: "/v1/mattermost"}


@dataclass
class Answer:
    """What a request is answered with."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    error: str = ""
    retry_after: int | None = None


class Refused(Exception):  # noqa: N818 - reads better at raise sites
    """Stop handling a request and answer ``status`` with a JSON error."""

    def __init__(
        self, status: int, error: str, detail: str = "", retry_after: int | None = None
    ) -> None:
        super().__init__(error)
        body: dict[str, Any] = {"error": error, "detail": detail} if detail else {"error": error}
        self.answer = Answer(status, body, error=error, retry_after=retry_after)


Handler = Callable[[web.Request], Awaitable[Answer]]


class WebhookServer:
    """The aiohttp application and its lifecycle inside one worker."""

    def __init__(self, rt: Runtime, creds: Credentials) -> None:
        s = rt.settings
        self.rt = rt
        self.creds = creds
        self.limiter = RateLimiter(s.webhook_rate_per_s, s.webhook_burst)  # per credential
        self.clients = RateLimiter(s.webhook_client_rate_per_s, s.webhook_client_burst)
        self.seen = RecentIds()
        self.metrics = WebhookMetrics.create(rt.metrics.registry)
        self.limits = Limits(
            header_timeout_s=s.webhook_header_timeout_s,
            body_timeout_s=s.webhook_body_timeout_s,
            keepalive_timeout_s=s.webhook_keepalive_timeout_s,
            max_connections=s.webhook_max_connections,
        )
        self.guard = Guard(self.limits, self.metrics, log)
        self.runner: web.AppRunner | None = None

    def application(self) -> web.Application:
        """The routes of the configured sources, plus ``/healthz``."""
        app = web.Application(
            client_max_size=self.rt.settings.webhook_max_bytes, middlewares=[json_errors]
        )
        app.on_response_prepare.append(server_headers)
        handlers: dict[str, Handler] = {}
        if self.creds.bearer:
            handlers[EVENTS] = self.events
        if self.creds.slack is not None:
            handlers[SLACK] = self.slack
        if self.creds.mattermost:
            handlers[MATTERMOST] = self.mattermost
        for source, handler in handlers.items():
            app.router.add_post(
                ROUTES[source],
                self._route(source, handler),
                name=source,
                expect_handler=self._expect(source),
            )
        app.router.add_get("/healthz", self.healthz, name="healthz")
        return app

    async def start(self) -> None:
        """Serve on ``TEILHABE_WEBHOOK_HOST:PORT`` (a Faust app task: the app is ready)."""
        if self.runner is not None:
            return
        s = self.rt.settings
        runner = GuardedRunner(self.application(), self.guard, shutdown_timeout=5.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, s.webhook_host, s.webhook_port).start()
        except OSError as exc:
            await runner.cleanup()
            log.error("webhooks cannot listen on %s:%s: %s", s.webhook_host, s.webhook_port, exc)
            raise
        self.runner = runner
        port = int(runner.addresses[0][1])
        write_port_file(s.data_dir, port)
        paths = dict.fromkeys(
            r.resource.canonical for r in runner.app.router.routes() if r.resource
        )
        log.info("webhooks http://%s:%s routes=%s", s.webhook_host, port, ",".join(paths))

    async def stop(self) -> None:
        """Stop accepting requests; those in flight finish (a stop hook: Kafka still runs)."""
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("webhooks stopped")

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the worker serves."""
        return web.json_response({"ok": True})

    # --- routes --------------------------------------------------------------------------
    async def events(self, request: web.Request) -> Answer:
        """Contract events (one, or an envelope) from a client holding the bearer token."""
        await self._before_body(request, EVENTS)
        body = await self._read(request)
        s = self.rt.settings
        now_ms = int(time.time() * 1000)
        decoded = decode_message(body, now_ms, s.future_tolerance_s * 1000, s.webhook_max_bytes)
        if decoded.dead or decoded.end_of_input:
            dead = decoded.dead[0] if decoded.dead else None
            reason = dead.reason if dead else "bad_envelope"
            detail = dead.detail if dead else "end_of_input is not accepted over HTTP"
            if dead is not None and dead.index is not None:
                detail = f"event {dead.index}: {detail}"
            letter = redacted_events(body, self.rt.pseudonymise)
            raise await self._malformed(EVENTS, InvalidEvent(reason, detail), letter)
        events = outgoing(decoded.events, self.rt.pseudonymise, already=decoded.pseudonymised)
        n = await self._send(EVENTS, events)
        return Answer(202, {"accepted": n}, events=n)

    async def slack(self, request: web.Request) -> Answer:
        """Slack Events API: the URL handshake and event callbacks (retries counted once)."""
        assert self.creds.slack is not None
        await self._before_body(request, SLACK)
        body = await self._read(request)
        h = request.headers
        if not self.creds.slack.verify(
            body, h.get("X-Slack-Request-Timestamp"), h.get("X-Slack-Signature")
        ):
            self._unauthorised(request, "bad_signature", "signature wrong or timestamp off")
        self._admit(SLACK)
        doc = await self._parsed(SLACK, lambda: parse_json_object(body))
        kind = doc.get("type")
        if kind == "url_verification" and isinstance(doc.get("challenge"), str):
            return Answer(200, {"challenge": doc["challenge"]})
        if kind != "event_callback":
            return self._ignored(SLACK, "callback_type")
        event_id = doc.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            missing = InvalidEvent("bad_payload", "event_callback without an event_id")
            raise await self._malformed(SLACK, missing, redacted(SLACK, doc))
        return await self._once(event_id, lambda: self._deliver(SLACK, doc, map_slack_callback))

    async def mattermost(self, request: web.Request) -> Answer:
        """A Mattermost outgoing webhook (form-encoded or JSON) with its token (in the
        ``Authorization: Token`` header, checked before the body is read, or in the body)."""
        authenticated = await self._before_body(request, MATTERMOST)
        body = await self._read(request)
        try:
            doc = parse_mattermost(body, request.content_type)
        except InvalidEvent as exc:
            if not authenticated:  # cannot even find the token: no dead letter
                self._unauthorised(request, "unauthorized", "no token in the body")
            raise await self._malformed(MATTERMOST, exc, redacted(MATTERMOST, None)) from None
        if not authenticated:
            token = doc.get("token")
            if not isinstance(token, str) or not token_matches(token, self.creds.mattermost):
                self._unauthorised(request, "unauthorized", "token missing or wrong")
            self._admit(MATTERMOST)
        answer = await self._deliver(MATTERMOST, doc, map_mattermost)
        answer.body = {}  # Mattermost would post a "text" of the answer into the channel
        return answer

    # --- steps ---------------------------------------------------------------------------
    def _route(self, source: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                answer = await handler(request)
            except Refused as refused:
                answer = refused.answer
            except Exception as exc:  # noqa: BLE001 - a bug: answered 500, logged without the body
                self.guard.failure(exc)
                answer = Answer(500, {"error": "internal"}, error="internal")
            return self._response(request, answer)

        return handle

    def _response(self, request: web.Request, answer: Answer) -> web.Response:
        """The JSON answer; what the access line reports of it (``server.Guard.access``)."""
        request["events"] = answer.events
        request["error"] = answer.error or "-"
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
        return web.Response(
            body=orjson.dumps(answer.body),
            status=answer.status,
            content_type="application/json",
            headers=headers,
        )

    def _expect(self, source: str) -> Callable[[web.Request], Awaitable[web.Response | None]]:
        """``Expect: 100-continue`` answered only once what can be checked before the body
        (size, token, the form of a signature) passed; else the refusal, and no body is sent."""

        async def expect(request: web.Request) -> web.Response | None:
            if request.version != HttpVersion11 or (
                request.headers.get("Expect", "").lower() != "100-continue"
            ):
                return self._response(request, Refused(400, "bad_expect").answer)
            try:
                await self._before_body(request, source)
            except Refused as refused:
                return self._response(request, refused.answer)
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer's head is still to come
            return None

        return expect

    async def _before_body(self, request: web.Request, source: str) -> bool:
        """What is checked before the body is read (once: the ``Expect`` handler may have):
        the declared size (413), a token sent in a header (401, or 429 over the credential's
        rate); a Slack signature's form and age. True when the request is authenticated."""
        done = request.get("authenticated")
        if isinstance(done, bool):
            return done
        if request.content_length is not None and request.content_length > self._max_bytes:
            raise self._too_large()
        h = request.headers
        authenticated = False
        if source == EVENTS:
            if not token_matches(bearer_token(h.get("Authorization")), self.creds.bearer):
                self._unauthorised(request, "unauthorized", "bearer token missing or wrong")
            authenticated = True
        elif source == MATTERMOST and h.get("Authorization"):
            token = header_token(h.get("Authorization"), "token")
            if not token_matches(token, self.creds.mattermost):
                self._unauthorised(request, "unauthorized", "token missing or wrong")
            authenticated = True
        elif source == SLACK:
            assert self.creds.slack is not None
            stamp, signature = h.get("X-Slack-Request-Timestamp"), h.get("X-Slack-Signature")
            if not self.creds.slack.plausible(stamp, signature):
                self._unauthorised(request, "bad_signature", "signature wrong or timestamp off")
        if authenticated:
            self._admit(source)
        request["authenticated"] = authenticated
        return authenticated

    def _unauthorised(self, request: web.Request, error: str, detail: str) -> None:
        """Refuse an unauthenticated request: 401, or 429 once its client address is over
        ``TEILHABE_WEBHOOK_CLIENT_RATE_PER_S`` (a budget of its own: no credential's)."""
        wait = self.clients.check(client_key(request.remote))
        if wait > 0:
            rate = self.rt.settings.webhook_client_rate_per_s
            raise Refused(429, "rate_limited", f"over {rate:g}/s", retry_after=math.ceil(wait))
        raise Refused(401, error, detail)

    def _admit(self, source: str) -> None:
        """Take an authenticated request from its credential's budget (429 when spent)."""
        wait = self.limiter.check(source)
        if wait > 0:
            rate = self.rt.settings.webhook_rate_per_s
            raise Refused(429, "rate_limited", f"over {rate:g}/s", retry_after=math.ceil(wait))

    async def _read(self, request: web.Request) -> bytes:
        """The body, at most ``TEILHABE_WEBHOOK_MAX_BYTES`` (also when chunked or compressed)
        within ``TEILHABE_WEBHOOK_BODY_TIMEOUT_S``: 413, 408, or 400 when it cannot be read
        (cut short, badly chunked or compressed)."""
        try:
            body = await asyncio.wait_for(request.read(), self.limits.body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None
        except TimeoutError:
            raise Refused(408, "body_timeout", "the body did not arrive in time") from None
        except Exception:  # noqa: BLE001 - any read failure is the client's: never a 500
            raise Refused(400, "unreadable_body", "the body could not be read") from None
        request["bytes"] = len(body)
        return body

    @property
    def _max_bytes(self) -> int:
        return self.rt.settings.webhook_max_bytes

    def _too_large(self) -> Refused:
        return Refused(413, "too_large", f"body above {self._max_bytes} bytes")

    async def _once(self, event_id: str, deliver: Callable[[], Awaitable[Answer]]) -> Answer:
        """Deliver a Slack event unless it was (or is being) delivered: Slack retries when an
        answer takes over 3 s or fails, with the same ``event_id``."""
        state = self.seen.begin(event_id)
        if state == "pending":
            raise Refused(503, "in_progress", "this event is being delivered", retry_after=1)
        if state == "done":
            return self._ignored(SLACK, "duplicate")
        try:
            answer = await deliver()
        except Refused as refused:
            if refused.answer.status >= 500:  # not delivered: Slack's retry must go through
                self.seen.abandon(event_id)
            else:  # refused for good (its dead letter is written): a retry changes nothing
                self.seen.finish(event_id)
            raise
        except BaseException:
            self.seen.abandon(event_id)
            raise
        self.seen.finish(event_id)
        return answer

    async def _parsed(self, source: str, parse: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """An authenticated body parsed; 400 and a (redacted) dead letter when it cannot be."""
        try:
            return parse()
        except InvalidEvent as exc:
            raise await self._malformed(source, exc, redacted(source, None)) from None

    async def _deliver(
        self, source: str, doc: dict[str, Any], mapper: Callable[[Mapping[str, Any]], Mapped]
    ) -> Answer:
        """Map a platform payload, validate its events and send them (400 when malformed)."""
        s = self.rt.settings
        try:
            mapped = mapper(doc)
            now_ms = int(time.time() * 1000)
            events = validate_all(mapped.events, now_ms, s.future_tolerance_s * 1000)
        except InvalidEvent as exc:
            raise await self._malformed(source, exc, redacted(source, doc)) from None
        if mapped.ignored:
            return self._ignored(source, mapped.ignored)
        n = await self._send(source, outgoing(events, self.rt.pseudonymise))
        return Answer(200, {"accepted": n}, events=n)

    async def _malformed(self, source: str, exc: InvalidEvent, payload: bytes) -> Refused:
        """Write the dead letter of a malformed request; the 400 to raise."""
        await self._dead_letter(source, exc.reason, exc.detail, payload)
        return Refused(400, exc.reason, exc.detail)

    def _ignored(self, source: str, reason: str) -> Answer:
        self.metrics.ignored.labels(source, reason).inc()
        return Answer(200, {"accepted": 0, "ignored": reason})

    async def _send(self, source: str, events: list[dict[str, Any]]) -> int:
        """Send pseudonymised events as envelopes within the record limit; return once Kafka
        confirmed them (503 when it does not in time). An event too large for a record goes
        to the dead letters (reason ``oversized``) and is not counted as accepted."""
        if not events:
            return 0
        delivery = self.rt.delivery
        budget = value_budget(self.rt.settings.kafka_max_record_bytes)
        records: list[Outgoing] = []
        accepted = 0
        for piece in envelopes(events, budget):
            if isinstance(piece, TooLarge):
                self.rt.metrics.events_invalid.labels("oversized").inc()
                records.append(
                    delivery.dead_letter(
                        "oversized",
                        piece.detail,
                        piece.item,
                        "webhook",
                        [("endpoint", source.encode())],
                    )
                )
            else:
                accepted += piece.count
                records.append(
                    Outgoing(
                        self.rt.events_topic,
                        piece.value,
                        head=ENVELOPE_HEAD,
                        tail=ENVELOPE_TAIL,
                    )
                )
        await self._confirmed(source, delivery.deliver(records))
        self.metrics.events.labels(source).inc(accepted)
        return accepted

    async def _dead_letter(self, source: str, reason: str, detail: str, payload: bytes) -> None:
        """Write a refused body to the dead-letter topic and wait for Kafka's confirmation."""
        dead = self.rt.delivery.dead_letter(
            reason, detail, payload, "webhook", [("endpoint", source.encode())]
        )
        await self._confirmed(source, self.rt.delivery.deliver([dead]))

    async def _confirmed(self, source: str, sending: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(sending, SEND_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the sender retries after a 503
            log.warning("webhook source=%s not confirmed by Kafka error=%r", source, exc)
            raise Refused(503, "not_confirmed", "Kafka did not confirm; retry", 5) from None


def write_port_file(data_dir: Path, port: int) -> None:
    """Record this worker's webhook port as ``data_dir/run/worker-PID.webhook`` (tests and
    the demo find it there, as the metrics port)."""
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"worker-{os.getpid()}.webhook").write_text(str(port))


def register(rt: Runtime) -> WebhookServer | None:
    """Serve the endpoint from this worker when ``TEILHABE_WEBHOOK_ENABLED``; the secret files
    are read now, so a missing or group-readable one stops the start with a clear message."""
    if not rt.settings.webhook_enabled:
        return None
    server = WebhookServer(rt, load_credentials(rt.settings))
    rt.app.task(server.start)
    # first on a graceful stop: no new input while the other hooks flush
    rt.app.stop_hooks.insert(0, ("webhook server", server.stop))  # type: ignore[attr-defined]
    return server
