"""The webhook endpoint over real HTTP on loopback, served by a running worker on the embedded
broker (Tansu) and chDB: Slack-signed events, the generic endpoint and Mattermost reach
ClickHouse pseudonymised; forged, replayed, unauthorised, oversized, malformed and flooding
requests are refused with the right status; no raw id nor message text is left anywhere.

The last tests run the server in-process against a fake Kafka that does not confirm, for the
503 path and Slack's retry of an event whose delivery failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import orjson
import pytest

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.dev.devstack import DevStack
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from tests.conftest import TEST_KEY
from tests.faults.harness import metric_value, read_records
from tests.faults.test_hostile_input import read_dead_letters
from tests.integration.webhook_helpers import (
    BEARER,
    MM_TOKEN,
    SIGNING_SECRET,
    Reply,
    callback,
    fake_runtime,
    http,
    metrics_text,
    signed,
    webhook_worker,
    worker_logs,
)

pytestmark = pytest.mark.integration

MAX_BYTES = 16_384
BURST = 40
PEOPLE = ("U0ANNA", "U0JONAS", "U0EVA", "gen-anna@example.org", "gen-jonas@example.org")
MM_PEOPLE = ("mm.anna", "mm.jonas", "uid-mm-anna")
TEXTS = (
    "Vertraulich-Alpha Quartalszahlen",
    "Vertraulich-Beta Antwort",
    "Vertraulich-Gamma kaputt",
    "Vertraulich-Delta Mattermost",
)


class Live:
    """The worker's endpoint and what the test sent to it."""

    def __init__(self, stack: DevStack, port: int) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.base = f"http://127.0.0.1:{port}"
        self.now = time.time() - 120
        self.replies: dict[str, Reply] = {}
        self.expected: dict[str, tuple[str, str, str | None]] = {}  # id -> type, actor, target

    def ts(self, n: int) -> str:
        return f"{int(self.now) + n}.{n:06d}"

    def slack(self, name: str, doc: dict[str, Any], **kw: Any) -> Reply:
        body = orjson.dumps(doc)
        headers = signed(body, **{k: v for k, v in kw.items() if k in ("age_s", "secret")})
        headers.update(kw.get("extra", {}))
        self.replies[name] = http(self.base + "/v1/slack/events", body, headers)
        return self.replies[name]

    def events(self, name: str, body: bytes, token: str = BEARER) -> Reply:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.replies[name] = http(self.base + "/v1/events", body, headers)
        return self.replies[name]

    def mattermost(self, name: str, fields: dict[str, str]) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        body = urlencode(fields).encode()
        self.replies[name] = http(self.base + "/v1/mattermost", body, headers)
        return self.replies[name]


def send_slack(live: Live) -> None:
    """Messages, a reply, a reaction, a join, a bot message, a retry, the handshake, forgeries."""
    post = {"type": "message", "channel": "C0TEAM", "user": "U0ANNA", "ts": live.ts(1)}
    post["text"] = f"{TEXTS[0]} <@U0JONAS>"
    reply = {"type": "message", "channel": "C0TEAM", "user": "U0JONAS", "ts": live.ts(2)}
    reply.update(text=TEXTS[1], thread_ts=live.ts(1), parent_user_id="U0ANNA")
    reaction = {"type": "reaction_added", "user": "U0EVA", "reaction": "tada"}
    reaction.update(item_user="U0ANNA", event_ts=live.ts(3))
    reaction["item"] = {"type": "message", "channel": "C0TEAM", "ts": live.ts(1)}
    joined = {"type": "member_joined_channel", "user": "U0EVA", "channel": "C0TEAM"}
    joined["event_ts"] = live.ts(4)
    bot = {**post, "subtype": "bot_message", "bot_id": "B1", "ts": live.ts(5)}
    live.slack("post", callback("EvPOST", post))
    live.slack("reply", callback("EvREPLY", reply))
    live.slack("retry", callback("EvREPLY", reply), extra={"X-Slack-Retry-Num": "1"})
    live.slack("reaction", callback("EvREACT", reaction))
    live.slack("joined", callback("EvJOIN", joined))
    live.slack("bot", callback("EvBOT", bot))
    live.slack("handshake", {"type": "url_verification", "challenge": "chal-123", "token": "x"})
    live.slack("forged", callback("EvF", post), secret="not-the-secret")
    live.slack("replayed", callback("EvR", post), age_s=600)
    broken = {"type": "message", "channel": "C0TEAM", "user": "U0ANNA", "text": TEXTS[2]}
    live.slack("malformed_slack", callback("EvBROKEN", broken))
    channel = "C0TEAM"
    live.expected.update(
        {
            f"slack:{channel}:{live.ts(1)}": ("post_created", "U0ANNA", None),
            f"slack:{channel}:{live.ts(1)}:mention:0": ("mention", "U0ANNA", "U0JONAS"),
            f"slack:{channel}:{live.ts(2)}": ("reply_created", "U0JONAS", "U0ANNA"),
            "slack:EvREACT": ("reaction_added", "U0EVA", "U0ANNA"),
            "slack:EvJOIN": ("member_joined", "U0EVA", None),
        }
    )


def send_generic(live: Live) -> None:
    """An envelope with raw ids, then a wrong bearer, oversized and malformed bodies."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.now))
    good = [
        {"event_id": "gen-1", "event_type": "post_created", "occurred_at": when},
        {"event_id": "gen-2", "event_type": "reply_created", "occurred_at": when},
    ]
    good[0].update(actor_id="gen-anna@example.org", platform="intranet")
    good[1].update(actor_id="gen-jonas@example.org", target_actor_id="gen-anna@example.org")
    live.events("generic", orjson.dumps({"schema_version": 1, "events": good}))
    live.expected["gen-1"] = ("post_created", "gen-anna@example.org", None)
    live.expected["gen-2"] = ("reply_created", "gen-jonas@example.org", "gen-anna@example.org")
    live.events("wrong_bearer", orjson.dumps(good[0]), token="guessed")
    live.events("oversized", b'{"events": [' + b" " * MAX_BYTES + b"]}")
    live.events("not_json", b"this is not json")
    bad = {**good[0], "event_id": "gen-bad", "event_type": "teleported"}
    live.events("invalid_event", orjson.dumps({"events": [good[0], bad]}))


def send_mattermost(live: Live) -> None:
    fields = {
        "token": MM_TOKEN,
        "team_id": "team0",
        "channel_id": "mmchan",
        "channel_name": "town-square",
        "timestamp": str(int(live.now * 1000)),
        "user_id": "uid-mm-anna",
        "user_name": "mm.anna",
        "post_id": "mmpost1",
        "text": f"{TEXTS[3]} @mm.jonas",
        "trigger_word": "Vertraulich-Delta",
    }
    live.mattermost("mattermost", fields)
    live.mattermost("mattermost_wrong_token", {**fields, "token": "guessed"})
    live.expected["mattermost:mmpost1"] = ("post_created", "mm.anna", None)
    live.expected["mattermost:mmpost1:mention:0"] = ("mention", "mm.anna", "mm.jonas")


def flood(live: Live) -> list[Reply]:
    """Twice the burst at once on one source."""
    body = orjson.dumps({"type": "url_verification", "challenge": "flood"})
    return [http(live.base + "/v1/slack/events", body, signed(body)) for _ in range(2 * BURST)]


def facts(settings: Settings, expected: int, timeout_s: float = 30) -> list[tuple[Any, ...]]:
    """The event facts, once ``expected`` distinct ids are there (or the timeout passed)."""
    client = get_client(settings)
    db = settings.clickhouse_database
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            rows = client.query(
                f"SELECT event_id, event_type, actor_id, target_actor_id, count() "
                f"FROM {db}.events GROUP BY 1, 2, 3, 4"
            ).result_rows
            if len(rows) >= expected or time.monotonic() > deadline:
                return [tuple(r) for r in rows]
            time.sleep(0.3)
    finally:
        client.close()


def facts_dump(settings: Settings) -> str:
    client = get_client(settings)
    try:
        result = client.query(f"SELECT * FROM {settings.clickhouse_database}.events")
        return orjson.dumps([list(map(str, r)) for r in result.result_rows]).decode()
    finally:
        client.close()


def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    return [m.value or b"" for m in read_records(bootstrap, topic)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One worker with the endpoint; every request of the test; what it left behind."""
    root = tmp_path_factory.mktemp("webhooks")
    with webhook_worker(
        root,
        webhook_max_bytes=MAX_BYTES,
        webhook_rate_per_s=2,
        webhook_burst=BURST,
        sink_flush_interval_s=0.2,
        log_level="DEBUG",
    ) as (stack, port):
        settings = stack.settings
        live = Live(stack, port)
        started = time.monotonic()
        health = http(live.base + "/healthz")
        send_slack(live)
        send_generic(live)
        send_mattermost(live)
        flooded = flood(live)
        answered_s = time.monotonic() - started
        rows = facts(settings, len(live.expected))
        yield {
            "live": live,
            "health": health,
            "flood": flooded,
            "answered_s": answered_s,
            "rows": rows,
            "metrics": metrics_text(stack),
            "dump": facts_dump(settings),
            "dead": read_dead_letters(stack.bootstrap, settings.topic_deadletter),
            "input": topic_values(stack.bootstrap, settings.topic_events),
            "alive": stack.workers[0].poll() is None,
        }


def status(run: dict[str, Any], name: str) -> int:
    return int(run["live"].replies[name][0])


def test_the_worker_serves_and_survives(run: dict[str, Any]) -> None:
    assert run["health"][0] == 200 and run["alive"]


def test_slack_events_accepted_and_handshake_echoed(run: dict[str, Any]) -> None:
    replies = run["live"].replies
    for name in ("post", "reply", "reaction", "joined", "bot", "retry"):
        assert status(run, name) == 200, (name, replies[name])
    assert replies["post"][2] == {"accepted": 2}  # the post and its mention
    assert replies["bot"][2] == {"accepted": 0, "ignored": "bot"}
    assert replies["handshake"][:1] == (200,) and replies["handshake"][2] == {
        "challenge": "chal-123"
    }


def test_forged_and_replayed_slack_requests_refused(run: dict[str, Any]) -> None:
    assert status(run, "forged") == 401
    assert status(run, "replayed") == 401


def test_events_reach_clickhouse_pseudonymised(run: dict[str, Any]) -> None:
    pseudonymise = Pseudonymiser(TEST_KEY.encode())
    got = {r[0]: (r[1], r[2], r[3]) for r in run["rows"]}
    want = {
        event_id: (kind, pseudonymise(actor), pseudonymise(target) if target else None)
        for event_id, (kind, actor, target) in run["live"].expected.items()
    }
    assert got == want


def test_slack_retry_counted_once(run: dict[str, Any]) -> None:
    assert run["live"].replies["retry"][2] == {"accepted": 0, "ignored": "duplicate"}
    counts = {r[0]: r[4] for r in run["rows"]}
    assert counts[f"slack:C0TEAM:{run['live'].ts(2)}"] == 1  # no second row, even unmerged
    text = run["metrics"]
    assert metric_value(text, "teilhabe_webhook_ignored_total", 'reason="duplicate"') == 1


def test_generic_endpoint_statuses(run: dict[str, Any]) -> None:
    replies = run["live"].replies
    assert replies["generic"][:1] == (202,) and replies["generic"][2] == {"accepted": 2}
    assert status(run, "wrong_bearer") == 401
    assert status(run, "oversized") == 413
    assert replies["not_json"][:1] == (400,) and replies["not_json"][2]["error"] == "not_json"
    invalid = replies["invalid_event"]
    assert invalid[0] == 400 and invalid[2]["error"] == "unknown_event_type"
    assert invalid[2]["detail"].startswith("event 1:")
    assert "gen-bad" not in {r[0] for r in run["rows"]}, "a refused request sends nothing"


def test_malformed_bodies_are_dead_letters_with_their_reason(run: dict[str, Any]) -> None:
    dead = [d for d in run["dead"] if d.get("source") == "webhook"]
    by_reason = {(d["endpoint"], d["reason"]): d for d in dead}
    assert set(by_reason) == {
        ("events", "not_json"),
        ("events", "unknown_event_type"),
        ("slack", "bad_payload"),
    }
    unparseable = orjson.loads(by_reason[("events", "not_json")]["value"])
    assert unparseable == {"redacted": True, "source": "events", "bytes": 16, "unparseable": True}
    invalid = orjson.loads(by_reason[("events", "unknown_event_type")]["value"])
    pseudonymise = Pseudonymiser(TEST_KEY.encode())
    assert [e["actor_id"] for e in invalid["events"]] == [pseudonymise("gen-anna@example.org")] * 2
    slack = run["live"].replies["malformed_slack"]
    assert slack[0] == 400 and slack[2]["error"] == "bad_payload"
    assert orjson.loads(by_reason[("slack", "bad_payload")]["value"])["redacted"] is True


def test_mattermost_token(run: dict[str, Any]) -> None:
    assert run["live"].replies["mattermost"][:1] == (200,)
    assert run["live"].replies["mattermost"][2] == {}  # no text: Mattermost posts nothing
    assert status(run, "mattermost_wrong_token") == 401


def test_a_flood_is_refused_with_retry_after(run: dict[str, Any]) -> None:
    codes = [r[0] for r in run["flood"]]
    limited = [r for r in run["flood"] if r[0] == 429]
    # the Slack source had spent some of its burst already; the rate refills 2/s
    assert len(limited) >= BURST - 2 * run["answered_s"], codes
    assert set(codes) <= {200, 429}
    assert all(int(r[1]["Retry-After"]) >= 1 for r in limited)
    text = run["metrics"]
    got = metric_value(text, "teilhabe_webhook_requests_total", 'status="429"')
    assert got == len(limited)


def test_no_raw_id_nor_text_anywhere(run: dict[str, Any]) -> None:
    logs = worker_logs(run["live"].stack)
    assert "level=DEBUG" in logs and "webhook source=slack status=200" in logs
    places = {
        "worker logs": logs,
        "clickhouse events": run["dump"],
        "input topic": b"\n".join(run["input"]).decode(errors="replace"),
        "dead letters": b"\n".join(d["value"] for d in run["dead"]).decode(errors="replace"),
    }
    secrets = (*PEOPLE, *MM_PEOPLE, *TEXTS, SIGNING_SECRET, BEARER, MM_TOKEN, TEST_KEY)
    found = [f"{where}: {s}" for where, text in places.items() for s in secrets if s in text]
    assert not found, found


def test_not_confirmed_is_503_and_slacks_retry_then_goes_through(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from agents import webhooks
    from pipeline.sources.webhooks.credentials import Credentials, SlackVerifier

    monkeypatch.setattr(webhooks, "SEND_TIMEOUT_S", 0.2)
    rt = fake_runtime(make_settings())
    server = webhooks.WebhookServer(cast(Any, rt), Credentials(slack=SlackVerifier(SIGNING_SECRET)))
    event = {"type": "message", "channel": "C1", "user": "U1", "ts": f"{int(time.time())}.000001"}
    body = orjson.dumps(callback("EvX", event))

    async def scenario() -> list[tuple[int, Any]]:
        out = []
        async with TestClient(TestServer(server.application())) as client:
            for confirm in (False, True, True):
                rt.events_topic.confirm = confirm
                resp = await client.post("/v1/slack/events", data=body, headers=signed(body))
                out.append((resp.status, await resp.json()))
        return out

    first, second, third = asyncio.run(scenario())
    assert first[0] == 503 and first[1]["error"] == "not_confirmed"
    assert second == (200, {"accepted": 1})  # the retry is delivered, not taken as a duplicate
    assert third == (200, {"accepted": 0, "ignored": "duplicate"})


def test_chunked_body_above_the_limit_is_413(make_settings: Any) -> None:
    """No Content-Length to trust: the read itself stops at the limit."""
    from aiohttp.test_utils import TestClient, TestServer

    from agents import webhooks
    from pipeline.sources.webhooks.credentials import Credentials

    rt = fake_runtime(make_settings(webhook_max_bytes=2048))
    server = webhooks.WebhookServer(cast(Any, rt), Credentials(bearer=[BEARER.encode()]))

    async def chunks() -> Any:
        for _ in range(8):
            yield b" " * 1024

    async def scenario() -> tuple[int, Any]:
        async with TestClient(TestServer(server.application())) as client:
            headers = {"Authorization": f"Bearer {BEARER}"}
            resp = await client.post("/v1/events", data=chunks(), headers=headers)
            return resp.status, await resp.json()

    assert asyncio.run(scenario()) == (
        413,
        {"error": "too_large", "detail": "body above 2048 bytes"},
    )
    assert rt.events_topic.sent == [] and rt.deadletter_topic.sent == []
