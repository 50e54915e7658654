"""Webhooks, the pure part: Slack signatures, tokens, rate limit, de-duplication, the mapping
of Slack and Mattermost payloads (no message text may leave it), and what goes to Kafka."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from prometheus_client import CollectorRegistry

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.contract.records import Envelope
from pipeline.errors import ConfigError, InvalidEvent
from pipeline.metrics.enrich import decode_message
from pipeline.settings import load_settings
from pipeline.sources.webhooks.credentials import (
    SlackVerifier,
    bearer_token,
    load_credentials,
    read_tokens,
    token_matches,
)
from pipeline.sources.webhooks.dedup import RecentIds
from pipeline.sources.webhooks.generic import envelopes, outgoing, redacted, validate_all
from pipeline.sources.webhooks.mattermost import (
    map_mattermost,
    mattermost_mentions,
    parse_mattermost,
)
from pipeline.sources.webhooks.metrics import WebhookMetrics
from pipeline.sources.webhooks.ratelimit import RateLimiter
from pipeline.sources.webhooks.slack import map_slack_callback, slack_mentions, slack_time

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_780_000_000.0  # 2026-05-28
NOW_MS = int(NOW * 1000)
TEXT = "Geheimer Quartalsbericht, bitte nicht weitersagen"
KEY = b"webhook-unit-test-key-0123456789"


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's signing formula, written out independently of slack_sdk."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def callback(event: dict[str, Any], event_id: str = "Ev01") -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": event_id,
        "event_time": int(NOW),
        "authorizations": [{"user_id": "UBOT"}],
        "event": event,
    }


def message(**fields: Any) -> dict[str, Any]:
    ev = {
        "type": "message",
        "channel": "C024BE91L",
        "user": "U0ANNA",
        "text": f"{TEXT} <@U0JONAS> and <@U0EVA|eva> and again <@U0JONAS>, me <@U0ANNA>",
        "ts": "1780000000.000200",
        "channel_type": "channel",
    }
    ev.update(fields)
    return ev


# --- Slack signature -------------------------------------------------------------------------
def test_slack_signature_with_slacks_own_formula() -> None:
    body = orjson.dumps(callback(message()))
    verifier = SlackVerifier(SECRET, now=lambda: NOW)
    ts = str(int(NOW) - 10)
    assert verifier.verify(body, ts, slack_signature(SECRET, ts, body))


@pytest.mark.parametrize("age_s", [301, 600, -301])
def test_slack_timestamp_outside_five_minutes_is_a_replay(age_s: int) -> None:
    body = b'{"type":"event_callback"}'
    ts = str(int(NOW) - age_s)
    assert not SlackVerifier(SECRET, now=lambda: NOW).verify(
        body, ts, slack_signature(SECRET, ts, body)
    )


@pytest.mark.parametrize(
    ("timestamp", "signature"),
    [
        ("{now}", "v0=" + "0" * 64),
        ("{now}", None),
        (None, "{good}"),
        ("soon", "{good}"),
        ("{now}", "{other_secret}"),
        ("{now}", "{other_body}"),
    ],
)
def test_slack_wrong_signature_refused(timestamp: str | None, signature: str | None) -> None:
    body = b'{"type":"event_callback","event_id":"Ev1"}'
    ts = str(int(NOW))
    values = {
        "{now}": ts,
        "{good}": slack_signature(SECRET, ts, body),
        "{other_secret}": slack_signature(SECRET + "x", ts, body),
        "{other_body}": slack_signature(SECRET, ts, body + b" "),
    }
    verifier = SlackVerifier(SECRET, now=lambda: NOW)
    got_ts = values.get(timestamp or "", timestamp)
    assert not verifier.verify(body, got_ts, values.get(signature or "", signature))


def test_slack_body_that_is_not_utf8_is_refused_not_raised() -> None:
    body = b"\xff\xfe"
    ts = str(int(NOW))
    sig = (
        "v0=" + hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, "sha256").hexdigest()
    )
    assert not SlackVerifier(SECRET, now=lambda: NOW).verify(body, ts, sig)


# --- tokens ----------------------------------------------------------------------------------
def test_bearer_and_tokens() -> None:
    tokens = [b"alpha-token", b"beta-token"]
    assert bearer_token("Bearer beta-token") == "beta-token"
    assert bearer_token("bearer  alpha-token ") == "alpha-token"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None
    assert bearer_token("Bearer ") is None
    assert token_matches("beta-token", tokens) and token_matches(b"alpha-token", tokens)
    assert not token_matches("gamma", tokens) and not token_matches("", tokens)
    assert not token_matches(None, tokens) and not token_matches("beta-token", [])
    assert not token_matches("bëta", tokens)  # non-ASCII: no TypeError from compare_digest


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_token_files_owner_only_several_lines(tmp_path: Path) -> None:
    f = write_secret(tmp_path / "t", "# rotation\nold-token\n\n new-token \n")
    assert read_tokens(f, "TEILHABE_MATTERMOST_TOKEN_FILE") == [b"old-token", b"new-token"]
    os.chmod(f, 0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_tokens(f, "TEILHABE_MATTERMOST_TOKEN_FILE")
    with pytest.raises(ConfigError, match="holds no token"):
        read_tokens(write_secret(tmp_path / "e", "# none\n"), "TEILHABE_WEBHOOK_TOKEN_FILE")


def test_credentials_needed_when_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TEILHABE_"):
            monkeypatch.delenv(key)
    with pytest.raises(ConfigError, match="no endpoint has credentials"):
        load_credentials(load_settings(webhook_enabled=True))
    secret = write_secret(tmp_path / "slack", SECRET + "\n")
    creds = load_credentials(load_settings(webhook_enabled=True, slack_signing_secret_file=secret))
    assert creds.slack is not None and not creds.bearer and not creds.mattermost


# --- rate limit and de-duplication -----------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_burst_then_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=3, clock=clock)
    assert [limiter.check("slack") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("slack") == pytest.approx(0.5)
    assert limiter.check("events") == 0.0  # per source
    clock.t += 0.5
    assert limiter.check("slack") == 0.0
    assert limiter.check("slack") > 0
    clock.t += 60  # refills to the burst, no further
    assert [limiter.check("slack") for _ in range(4)][-1] > 0


def test_rate_limiter_forgets_old_sources() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=FakeClock(), max_sources=2)
    for source in ("a", "b", "c"):
        limiter.check(source)
    assert limiter.check("a") == 0.0  # forgotten: a full bucket again
    assert limiter.check("c") > 0


def test_recent_ids_dedup_with_ttl_and_bound() -> None:
    clock = FakeClock()
    seen = RecentIds(ttl_s=60, max_ids=3, clock=clock)
    assert seen.begin("Ev1") == "new"
    assert seen.begin("Ev1") == "pending"
    seen.finish("Ev1")
    assert seen.begin("Ev1") == "done"
    assert seen.begin("Ev2") == "new"
    seen.abandon("Ev2")  # delivery failed: the retry goes through
    assert seen.begin("Ev2") == "new"
    clock.t += 61
    assert seen.begin("Ev1") == "new"  # expired
    for i in range(5):
        seen.begin(f"x{i}")
    assert len(seen._ids) <= 3


# --- Slack mapping ---------------------------------------------------------------------------
def slack_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    mapped = map_slack_callback(callback(event))
    assert mapped.ignored is None
    validate_all(mapped.events, NOW_MS, 3_600_000)
    return mapped.events


def test_slack_time_keeps_microseconds() -> None:
    assert slack_time("1780000000.000200") == "2026-05-28T20:26:40.000200Z"
    assert slack_time("1780000000") == "2026-05-28T20:26:40.000000Z"
    with pytest.raises(InvalidEvent):
        slack_time("yesterday")


def test_slack_top_level_message_is_a_post_with_mentions() -> None:
    post, *mentions = slack_events(message())
    assert post["event_type"] == "post_created" and post["actor_id"] == "U0ANNA"
    assert post["event_id"] == "slack:C024BE91L:1780000000.000200"
    assert post["content_id"] == post["root_content_id"] == post["event_id"]
    assert post["space_id"] == "C024BE91L" and post["platform"] == "slack"
    assert "target_actor_id" not in post
    assert [(m["event_type"], m["target_actor_id"]) for m in mentions] == [
        ("mention", "U0JONAS"),
        ("mention", "U0EVA"),
        ("mention", "U0ANNA"),  # as the export reader: the views leave self-ties out
    ]  # once each
    assert [m["event_id"] for m in mentions] == [
        f"{post['event_id']}:mention:{i}" for i in range(3)
    ]
    assert all(m["content_id"] == post["event_id"] for m in mentions)


def test_slack_thread_reply_targets_the_parent_author() -> None:
    reply, *_ = slack_events(
        message(thread_ts="1779999000.000100", parent_user_id="U0JONAS", text="ok")
    )
    assert reply["event_type"] == "reply_created" and reply["target_actor_id"] == "U0JONAS"
    root = "slack:C024BE91L:1779999000.000100"
    assert reply["parent_content_id"] == reply["root_content_id"] == root
    unknown, *_ = slack_events(message(thread_ts="1779999000.000100", text="ok"))
    assert unknown["event_type"] == "reply_created" and "target_actor_id" not in unknown
    root, *_ = slack_events(message(thread_ts="1780000000.000200", text="ok"))
    assert root["event_type"] == "post_created"  # the thread's first message
    broadcast, *_ = slack_events(
        message(subtype="thread_broadcast", thread_ts="1779999000.000100", text="")
    )
    assert broadcast["event_type"] == "reply_created"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"subtype": "bot_message"}, "bot"),
        ({"subtype": "message_changed"}, "edit"),
        ({"subtype": "message_deleted"}, "deletion"),
        ({"subtype": "channel_join"}, "join_message"),
        ({"subtype": "channel_topic"}, "subtype"),
        ({"bot_id": "B1"}, "bot"),
        ({"channel_type": "im"}, "direct_message"),
        ({"user": None}, "no_user"),
    ],
)
def test_slack_messages_left_out_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    mapped = map_slack_callback(callback(message(**fields)))
    assert mapped.events == [] and mapped.ignored == reason


def test_slack_reaction_and_join() -> None:
    (reaction,) = slack_events(
        {
            "type": "reaction_added",
            "user": "U0EVA",
            "reaction": "thumbsup",
            "item_user": "U0ANNA",
            "item": {"type": "message", "channel": "C1", "ts": "1779999999.000100"},
            "event_ts": "1780000001.000300",
        }
    )
    assert reaction["event_type"] == "reaction_added" and reaction["event_id"] == "slack:Ev01"
    assert (reaction["actor_id"], reaction["target_actor_id"]) == ("U0EVA", "U0ANNA")
    assert reaction["content_id"] == "slack:C1:1779999999.000100" and reaction["space_id"] == "C1"
    assert reaction["occurred_at"] == "2026-05-28T20:26:41.000300Z"
    (joined,) = slack_events(
        {
            "type": "member_joined_channel",
            "user": "U0EVA",
            "channel": "C1",
            "event_ts": "1780000002.0",
        }
    )
    assert joined["event_type"] == "member_joined" and joined["space_id"] == "C1"
    other = map_slack_callback(callback({"type": "app_mention", "user": "U1"}))
    assert other.ignored == "event_type"


@pytest.mark.parametrize(
    "event",
    [
        None,
        {"type": 7},
        message(ts=None),
        message(channel=""),
        message(ts="not-a-ts"),
        message(thread_ts=12),
        {"type": "reaction_added", "user": "U1", "reaction": "x", "event_ts": "1.0"},
    ],
)
def test_slack_malformed_payloads_raise(event: Any) -> None:
    doc = callback(event) if event is not None else {"type": "event_callback"}
    with pytest.raises(InvalidEvent):
        map_slack_callback(doc)


def test_slack_mention_syntax() -> None:
    text = "<@U1> <@W2|wally> <!channel> <@u3> <#C1|general> <@U1>"
    assert slack_mentions(text) == ["U1", "W2"]
    assert slack_mentions(None) == []


# --- Mattermost mapping ----------------------------------------------------------------------
MM = {
    "token": "mm-token",
    "team_id": "team1",
    "channel_id": "chan1",
    "channel_name": "town-square",
    "timestamp": "1780000000123",
    "user_id": "uid-anna",
    "user_name": "Anna.Schmidt",
    "post_id": "post1",
    "text": f"{TEXT} @jonas @eva. @all mail anna@example.org @jonas @anna.schmidt",
    "trigger_word": "Geheimer",
    "file_ids": "",
}


def test_mattermost_form_and_json_bodies() -> None:
    form = parse_mattermost(urlencode(MM).encode(), "application/x-www-form-urlencoded")
    as_json = parse_mattermost(orjson.dumps({**MM, "timestamp": 1780000000123}), "application/json")
    for doc in (form, as_json):
        post, *mentions = map_mattermost(doc).events
        validate_all([post, *mentions], NOW_MS, 3_600_000)
        assert post["event_type"] == "post_created" and post["actor_id"] == "anna.schmidt"
        assert post["event_id"] == "mattermost:post1" and post["space_id"] == "chan1"
        assert post["occurred_at"] == "2026-05-28T20:26:40.123000Z"
        assert [m["target_actor_id"] for m in mentions] == ["jonas", "eva", "anna.schmidt"]
        assert all(m["actor_id"] == "anna.schmidt" for m in mentions)


def test_mattermost_mentions_skip_mail_addresses_and_specials() -> None:
    assert mattermost_mentions("@Jonas, @here (@eva_k) x@y.z @jonas.") == ["jonas", "eva_k"]


@pytest.mark.parametrize("missing", ["user_name", "post_id", "channel_id", "timestamp"])
def test_mattermost_malformed(missing: str) -> None:
    with pytest.raises(InvalidEvent):
        map_mattermost({k: v for k, v in MM.items() if k != missing})
    with pytest.raises(InvalidEvent):
        parse_mattermost(b"[1]", "application/json")


# --- privacy: no text, raw ids only until pseudonymised --------------------------------------
def test_no_message_text_leaves_the_mapping() -> None:
    events = map_slack_callback(callback(message())).events + map_mattermost(MM).events
    dumped = orjson.dumps(events).decode()
    for word in TEXT.replace(",", "").split():
        assert word not in dumped
    assert "text" not in dumped and "trigger_word" not in dumped


def test_outgoing_pseudonymised_envelopes_pass_the_worker_check() -> None:
    pseudonymise = Pseudonymiser(KEY)
    mapped = map_slack_callback(callback(message(thread_ts="1.0", parent_user_id="U0JONAS")))
    valid = validate_all(mapped.events, NOW_MS, 3_600_000)
    out = outgoing(valid, pseudonymise)
    assert out[0]["actor_id"] == pseudonymise("U0ANNA")
    assert out[0]["target_actor_id"] == pseudonymise("U0JONAS")
    assert all("ts" not in ev and None not in ev.values() for ev in out)
    many = out * 40
    messages = [e.value for e in envelopes(many, max_bytes=4096) if isinstance(e, Envelope)]
    assert len(messages) > 1 and all(len(m) <= 4096 for m in messages)
    decoded = [decode_message(m, NOW_MS, 3_600_000, 10_000) for m in messages]
    assert all(d.pseudonymised and not d.dead for d in decoded)
    assert sum(len(d.events) for d in decoded) == len(many)
    kept = outgoing(valid, pseudonymise, already=True)
    assert kept[0]["actor_id"] == "U0ANNA"


def test_no_raw_person_id_after_pseudonymisation() -> None:
    reaction = {
        "type": "reaction_added",
        "user": "U0EVA",
        "reaction": "tada",
        "item_user": "U0ANNA",
        "item": {"type": "message", "channel": "C1", "ts": "1779999999.000100"},
        "event_ts": "1780000001.000300",
    }
    joined = {"type": "member_joined_channel", "user": "U0EVA", "channel": "C1", "event_ts": "1.5"}
    events = [
        *map_slack_callback(callback(message(thread_ts="1.0", parent_user_id="U0JONAS"))).events,
        *map_slack_callback(callback(reaction)).events,
        *map_slack_callback(callback(joined)).events,
        *map_mattermost(MM).events,
    ]
    out = outgoing(validate_all(events, NOW_MS, 3_600_000), Pseudonymiser(KEY))
    dumped = orjson.dumps(out).decode().lower()
    for raw in ("u0anna", "u0jonas", "u0eva", "anna.schmidt", "jonas", "eva", "uid-anna"):
        assert raw not in dumped, raw


def test_dead_letters_of_platforms_hold_no_text_nor_person() -> None:
    doc = callback(message(parent_user_id="U0JONAS", user_profile={"real_name": "Anna S"}))
    slack = redacted("slack", doc)
    assert orjson.loads(slack)["event"]["ts"] == "1780000000.000200"
    mm = redacted("mattermost", MM)
    for payload in (slack, mm):
        for secret in ("U0ANNA", "U0JONAS", "UBOT", "Anna", "anna", "Geheimer", "mm-token"):
            assert secret.encode() not in payload, (secret, payload)
    assert orjson.loads(redacted("slack", None)) == {
        "redacted": True,
        "source": "slack",
        "unparseable": True,
    }


def test_metrics_register_in_the_workers_registry() -> None:
    registry = CollectorRegistry()
    m = WebhookMetrics.create(registry)
    m.requests.labels("slack", "200").inc()
    assert (
        registry.get_sample_value(
            "teilhabe_webhook_requests_total", {"source": "slack", "status": "200"}
        )
        == 1.0
    )
