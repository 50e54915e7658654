"""The webhook endpoint's limits over real HTTP on loopback (raw sockets where a client must
misbehave), against a running worker with shortened timeouts: what reached the worker's log
(never a token, an address or a text), the statuses (never a 500), unauthenticated floods that
leave authenticated senders alone, timeouts and the connection cap (docs/connectors.md,
"Limits")."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import orjson
import pytest

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.dev.devstack import DevStack
from pipeline.sources.webhooks.metrics import STATUSES
from pipeline.sources.webhooks.server import GuardedRunner
from tests.conftest import TEST_KEY
from tests.faults.test_hostile_input import read_dead_letters
from tests.integration.webhook_helpers import (
    BEARER,
    MM_TOKEN,
    SIGNING_SECRET,
    callback,
    fake_runtime,
    http,
    metrics_text,
    signed,
    webhook_worker,
    worker_logs,
)

pytestmark = pytest.mark.integration

EMAIL = "limits-anna@example.org"
TEXT = "Vertraulich-Epsilon Gehälter"
CLIENT_BURST = 10
MAX_CONNECTIONS = 48
WAIT_S = 20.0  # an upper bound for a close that the shortened timeouts make take ~1-3 s


class Worker:
    """The running worker's endpoint."""

    def __init__(self, stack: DevStack, port: int) -> None:
        self.stack = stack
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return worker_logs(self.stack)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S)
        return sock

    def raw(self, data: bytes, close_write: bool = False) -> bytes:
        """Send ``data`` on a new connection; everything the server answers until it closes."""
        with self.connect() as sock:
            sock.sendall(data)
            if close_write:
                sock.shutdown(socket.SHUT_WR)
            return read_until_closed(sock)


def read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (WAIT_S at most)."""
    out = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"not closed after {WAIT_S} s: {out[:200]!r}")


def statuses(answer: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


def events_body(
    actor: str = EMAIL, kind: str = "post_created", pseudonymised: bool = False, **extra: Any
) -> bytes:
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    event = {"event_id": f"lim-{time.monotonic_ns()}", "event_type": kind, "occurred_at": when}
    event.update(actor_id=actor, platform="intranet", **extra)
    return orjson.dumps({"schema_version": 1, "pseudonymised": pseudonymised, "events": [event]})


def bearer(token: str = BEARER) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with webhook_worker(
        tmp_path_factory.mktemp("webhook-limits"),
        webhook_header_timeout_s=1,
        webhook_body_timeout_s=1,
        webhook_keepalive_timeout_s=3,
        webhook_max_connections=MAX_CONNECTIONS,
        webhook_client_rate_per_s=5,
        webhook_client_burst=CLIENT_BURST,
        webhook_max_bytes=16_384,
        webhook_rate_per_s=20,  # per credential: a flood would spend this budget were it shared
        webhook_burst=40,
        log_level="DEBUG",
    ) as (stack, port):
        yield Worker(stack, port)


def assert_clean_log(text: str, bug: bool = False) -> None:
    """No secret, address or text of any request, no traceback, no 500 (unless a ``bug``)."""
    for secret in (BEARER, MM_TOKEN, SIGNING_SECRET, EMAIL, TEXT, "Gehälter", "Traceback"):
        assert secret not in text, secret
    assert bug or "status=500" not in text


def test_a_token_with_a_carriage_return_is_refused_and_not_logged(worker: Worker) -> None:
    """``printf 'TOK\\r\\n' > t; curl -H "Authorization: Bearer $(cat t)"``."""
    body = events_body()
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + BEARER.encode() + b"\r\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = worker.raw(request)
    assert statuses(answer) == [400]
    assert answer.endswith(b'{"error":"bad_request"}')
    assert_clean_log(worker.log())


def test_a_length_counted_in_characters_leaks_nothing(worker: Worker) -> None:
    """The rest of the body past a short Content-Length is parsed as a second request."""
    doc = {"token": MM_TOKEN, "user_name": EMAIL, "text": f"{TEXT} für @mm.jonas"}
    text = orjson.dumps(doc).decode()
    body = text.encode()
    assert len(text) < len(body)
    request = (
        b"POST /v1/mattermost HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(text) - 40).encode() + b"\r\n\r\n" + body
    )
    answer = worker.raw(request)
    codes = statuses(answer)
    assert codes and set(codes) <= {400, 401, 429}, answer
    assert_clean_log(worker.log())


def test_no_unauthenticated_500(worker: Worker) -> None:
    big_stamp = {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=" + "0" * 64}
    got = http(worker.base + "/v1/slack/events", b"{}", big_stamp)
    assert got[0] in (401, 429) and got[2]["error"] in ("bad_signature", "rate_limited")
    # Content-Length 100, one byte, then the client closes: for each route
    for path, headers in (
        ("/v1/slack/events", signed(b"{")),
        ("/v1/mattermost", {"Content-Type": "application/json"}),
        ("/v1/events", bearer()),
    ):
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: 100\r\n\r\n{{"
        answer = worker.raw(request.encode(), close_write=True)
        assert set(statuses(answer)) <= {400, 401, 429}, (path, answer)
    # a signed message whose ts is beyond the year 9999
    late = {"type": "message", "channel": "C0", "user": "U0LATE", "ts": "999999999999.000001"}
    body = orjson.dumps(callback("EvLATE", late))
    got = http(worker.base + "/v1/slack/events", body, signed(body))
    assert got[0] == 400 and got[2]["error"] == "bad_timestamp"
    assert http(worker.base + "/healthz")[0] == 200
    text = metrics_text(worker.stack)
    assert 'status="500"' not in text
    assert_clean_log(worker.log())


def test_expect_continue_only_after_the_token(worker: Worker) -> None:
    body = events_body(actor="limits-expect")
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    )
    with worker.connect() as sock:
        sock.sendall(head + b"Authorization: Bearer guessed\r\n\r\n")
        refused = read_until_closed(sock)
    assert statuses(refused)[0] in (401, 429), refused
    assert b"100 Continue" not in refused
    with worker.connect() as sock:
        sock.sendall(head + b"Authorization: Bearer " + BEARER.encode() + b"\r\n\r\n")
        first = sock.recv(4096)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        sock.sendall(body)
        accepted = first + read_until_closed(sock)
    assert statuses(accepted) == [100, 202], accepted


def test_no_aiohttp_server_header_and_json_404_405(worker: Worker) -> None:
    missing = http(worker.base + "/nowhere")
    wrong_method = http(worker.base + "/v1/events")
    health = http(worker.base + "/healthz")
    assert (missing[0], missing[2]) == (404, {"error": "not_found"})
    assert (wrong_method[0], wrong_method[2]) == (405, {"error": "method_not_allowed"})
    for reply in (missing, wrong_method, health):
        assert reply[1]["Server"] == "teilhabe" and "aiohttp" not in str(reply[1])
        assert re.fullmatch("[0-9a-f]{12}", reply[1]["X-Request-Id"])


def test_dead_letters_of_the_generic_endpoint_are_pseudonymised(worker: Worker) -> None:
    """An envelope claiming ``"pseudonymised": true`` with an e-mail address and a text."""
    body = events_body(
        kind="teleported",
        pseudonymised=True,
        text=TEXT,
        target_actor_id="limits-jonas@example.org",
    )
    got = http(worker.base + "/v1/events", body, bearer())
    assert got[0] == 400 and got[2]["error"] in ("unknown_event_type", "bad_pseudonym"), got
    settings = worker.stack.settings
    dead = [
        d
        for d in read_dead_letters(worker.stack.bootstrap, settings.topic_deadletter)
        if d.get("endpoint") == "events"
    ]
    assert len(dead) == 1
    letter = orjson.loads(dead[0]["value"])
    pseudonymise = Pseudonymiser(TEST_KEY.encode())
    (event,) = letter["events"]
    assert event["actor_id"] == pseudonymise(EMAIL)
    assert event["target_actor_id"] == pseudonymise("limits-jonas@example.org")
    assert "text" not in event and event["fields_left_out"] == 1
    raw = dead[0]["value"].decode()
    assert EMAIL not in raw and TEXT not in raw and "limits-jonas" not in raw


def test_idle_and_partial_connections_are_closed(worker: Worker) -> None:
    """Idle (keep-alive 3 s), partial headers (1 s: 408), partial bodies (1 s: 408; refused
    unauthenticated at once, the unread rest drained for 2 s)."""
    body_head = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + BEARER.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"ev'
    )
    kinds = {
        "idle": b"",
        "partial_header": b"POST /v1/events HTTP/1.1\r\nHo",
        "partial_body": body_head,
    }
    kinds["unauthenticated_body"] = body_head.replace(BEARER.encode(), b"guessed")
    sockets = [(kind, worker.connect()) for kind in kinds for _ in range(6)]
    for kind, sock in sockets:
        if kinds[kind]:
            sock.sendall(kinds[kind])
    with ThreadPoolExecutor(len(sockets)) as pool:
        answers = list(pool.map(lambda ks: (ks[0], read_until_closed(ks[1])), sockets))
    for _, sock in sockets:
        sock.close()
    for kind, answer in answers:
        want = {"idle": [[]], "partial_header": [[408]], "partial_body": [[408]]}
        assert statuses(answer) in want.get(kind, [[401], [429]]), (kind, answer)


def test_over_the_connection_cap_is_503(worker: Worker) -> None:
    held = [worker.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # the server has accepted them (not a timed assertion: see below)
        extra = worker.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        for sock in held:
            sock.close()
    assert statuses(extra) == [503], extra
    assert b"Retry-After: 1\r\n" in extra and extra.endswith(b'{"error":"overloaded"}')


def test_malformed_requests_do_not_flood_the_log(worker: Worker) -> None:
    log_file = worker.stack.log_dir / "worker-0.log"
    before = log_file.stat().st_size
    garbage = [
        b"\x16\x03\x01 not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon " + BEARER.encode() + b"\r\n\r\n",
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ]

    def send(i: int) -> list[int]:
        return statuses(worker.raw(garbage[i % len(garbage)]))

    with ThreadPoolExecutor(8) as pool:
        answered = [s for codes in pool.map(send, range(500)) for s in codes]
    assert set(answered) <= {400, 503} and answered.count(400) > 400
    http(worker.base + "/healthz")  # a line after them: the flood's lines are written
    grown = log_file.read_bytes()[before:].decode(errors="replace")
    above_debug = [line for line in grown.splitlines() if "level=DEBUG" not in line]
    size = len(grown.encode())
    print(f"500 malformed requests: {size} log bytes, {len(above_debug)} lines above DEBUG")
    assert len(above_debug) < 10, above_debug[:20]
    assert_clean_log(grown)


def test_an_unauthenticated_flood_leaves_the_authenticated_sender_alone(worker: Worker) -> None:
    """Two clients flood with wrong tokens and forged signatures while the real sender sends."""
    stop = threading.Event()
    flood_codes: list[int] = []

    def flood(path: str, headers: dict[str, str]) -> None:
        while not stop.is_set() and len(flood_codes) < 600:
            flood_codes.append(http(worker.base + path, b"{}", headers)[0])

    forged = {**signed(b"{}", secret="not-the-secret")}
    threads = [
        threading.Thread(target=flood, args=("/v1/events", bearer("guessed"))),
        threading.Thread(target=flood, args=("/v1/slack/events", forged)),
    ]
    for t in threads:
        t.start()
    valid = []
    try:
        for i in range(30):
            valid.append(
                http(worker.base + "/v1/events", events_body(f"limits-flood-{i}"), bearer())
            )
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(
        f"flood: {len(flood_codes)} unauthenticated ({flood_codes.count(429)} x 429), "
        f"valid {sum(v[0] == 202 for v in valid)}/{len(valid)} accepted"
    )
    assert [v[0] for v in valid] == [202] * len(valid)
    assert set(flood_codes) <= {401, 429} and flood_codes.count(429) > 0
    assert_clean_log(worker.log())


def test_statuses_stay_in_the_documented_set(worker: Worker) -> None:
    assert http(worker.base + "/healthz")[0] == 200
    text = metrics_text(worker.stack)
    seen = set(re.findall(r'teilhabe_webhook_requests_total\{[^}]*status="(\d+)"', text))
    assert "200" in seen and seen <= set(STATUSES), seen
    assert_clean_log(worker.log())


def serve_in_process(server: Any, requests: list[bytes]) -> list[bytes]:
    """Send each raw request on a connection of its own to ``server`` served as the worker
    serves it (``GuardedRunner`` on loopback, in this process); the raw answers."""
    from aiohttp import web

    async def scenario() -> list[bytes]:
        runner = GuardedRunner(server.application(), server.guard)
        await runner.setup()
        answers = []
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = int(runner.addresses[0][1])
            for request in requests:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                answers.append(await asyncio.wait_for(reader.read(), WAIT_S))
                writer.close()
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(scenario())


def in_process_server(make_settings: Any, **values: Any) -> tuple[Any, Any]:
    from agents import webhooks
    from pipeline.sources.webhooks.credentials import Credentials, SlackVerifier

    rt = fake_runtime(make_settings(webhook_port=0, **values))
    creds = Credentials(
        bearer=[BEARER.encode()],
        slack=SlackVerifier(SIGNING_SECRET),
        mattermost=[MM_TOKEN.encode()],
    )
    return rt, webhooks.WebhookServer(cast(Any, rt), creds)


def test_a_bug_is_a_counted_500_logged_without_its_message(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rt, server = in_process_server(make_settings)

    def broken(raw: str) -> str:
        raise RuntimeError(f"cannot pseudonymise {raw}")

    rt.pseudonymise = broken
    body = events_body()
    request = (
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + BEARER.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with caplog.at_level(logging.DEBUG, "teilhabe.webhooks"):
        (answer,) = serve_in_process(server, [request])
    assert statuses(answer) == [500] and answer.endswith(b'{"error":"internal"}')
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        re.search(r"internal error=RuntimeError at=test_webhook_limits\.py:\d+", m) for m in lines
    )
    assert any("source=events status=500" in m for m in lines), lines
    assert_clean_log("\n".join(lines), bug=True)
    assert server.metrics.requests.labels("events", "500")._value.get() == 1


def _post(path: str, head: bytes, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + head
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_odd_requests_get_a_4xx_never_a_500(
    make_settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, server = in_process_server(make_settings, webhook_client_burst=1000)
    auth = b"Authorization: Bearer " + BEARER.encode() + b"\r\n"
    mm = b"Authorization: Token " + MM_TOKEN.encode() + b"\r\n"
    stamp = str(int(time.time())).encode()
    huge_ts = b"user_name=a&post_id=p&channel_id=c&timestamp=99999999999999&text=" + TEXT.encode()
    requests = {
        "content-type garbage": _post("/v1/mattermost", b'Content-Type: \xff;;="\r\n', b"token"),
        "gzip garbage": _post("/v1/events", auth + b"Content-Encoding: gzip\r\n", b"abcde"),
        "bad chunk": f"POST /v1/events HTTP/1.1\r\nHost: x\r\n{auth.decode()}"
        "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode(),
        "non-ASCII bearer": _post("/v1/events", b"Authorization: Bearer \xc3\xa4\xff\r\n", b"{}"),
        "non-ASCII token": _post("/v1/mattermost", b"Authorization: Token \xff\r\n", b"{}"),
        "non-ASCII signature": _post(
            "/v1/slack/events",
            b"X-Slack-Request-Timestamp: " + stamp + b"\r\n"
            b"X-Slack-Signature: v0=\xc3\xa4" + b"a" * 62 + b"\r\n",
            b"{}",
        ),
        "form not UTF-8": _post("/v1/mattermost", b"", b"\xff\xfe="),
        "JSON list": _post("/v1/mattermost", b"Content-Type: application/json\r\n", b"[]"),
        "body not JSON after the header token": _post(
            "/v1/mattermost", mm + b"Content-Type: application/json\r\n", b"{{{"
        ),
        "year 5138": _post("/v1/mattermost", mm, huge_ts),
        "huge Content-Length": b"POST /v1/events HTTP/1.1\r\nHost: x\r\n"
        + auth
        + b"Content-Length: 99999999999999999999999\r\n\r\n",
        "unknown Expect": _post("/v1/events", auth + b"Expect: 200-ok\r\n", b"{}"),
        "deep JSON": _post("/v1/events", auth, b"[" * 2000 + b"]" * 2000),
        "infinite number": _post("/v1/events", auth, b'{"schema_version":1e999,"events":[]}'),
    }
    with caplog.at_level(logging.DEBUG, "teilhabe.webhooks"):
        answers = serve_in_process(server, list(requests.values()))
    for name, answer in zip(requests, answers, strict=True):
        codes = statuses(answer)
        assert codes and all(400 <= c < 500 for c in codes), (name, answer)
        assert answer.split(b"\r\n\r\n")[-1].startswith(b'{"error":'), (name, answer)
    assert_clean_log("\n".join(r.getMessage() for r in caplog.records))
