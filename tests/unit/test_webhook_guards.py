"""The pure parts of the webhook endpoint's limits: rate limits per key and client address,
the rate-limited log, Slack header checks, redacted dead letters of ``/v1/events``, and the
documented status set of ``teilhabe_webhook_requests_total``."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import orjson
import pytest

from pipeline.errors import InvalidEvent
from pipeline.sources.webhooks.credentials import SlackVerifier, header_token
from pipeline.sources.webhooks.generic import redacted_events
from pipeline.sources.webhooks.logs import LimitedLog
from pipeline.sources.webhooks.metrics import STATUSES
from pipeline.sources.webhooks.ratelimit import RateLimiter, client_key
from pipeline.sources.webhooks.slack import slack_time

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_documented_statuses_are_the_metric_label_set() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    row = next(line for line in text.splitlines() if "`teilhabe_webhook_requests_total`" in line)
    listed = re.search(r"HTTP status \(([^)]*)\)", row)
    assert listed and listed[1].split(", ") == list(STATUSES), row


def test_waiting_takes_nothing_and_check_takes_one() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.waiting("a") for _ in range(10)] == [0.0] * 10
    assert [limiter.check("a") for _ in range(3)] == [0.0] * 3
    assert limiter.check("a") == pytest.approx(0.5) and limiter.waiting("a") == pytest.approx(0.5)
    assert limiter.check("b") == 0.0  # a budget of its own
    clock.now += 0.5
    assert limiter.check("a") == 0.0


def test_keys_beyond_the_bound_are_forgotten_oldest_first() -> None:
    limiter = RateLimiter(1.0, 1, clock=Clock(), max_sources=3)
    for key in "abcd":
        limiter.check(key)
    assert len(limiter) == 3
    assert limiter.check("a") == 0.0  # forgotten: full again
    assert limiter.check("d") > 0


def test_client_key_buckets_ipv6_by_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key(None) == client_key("not an address") == "unknown"


def test_limited_log_writes_once_per_key_and_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limited = LimitedLog(logging.getLogger("test.limited"), interval_s=60, clock=clock)
    with caplog.at_level(logging.INFO, "test.limited"):
        written = [limited.log("k1", logging.WARNING, "bad %s", i) for i in range(5)]
        written.append(limited.log("k2", logging.WARNING, "bad %s", "other"))
        clock.now += 61
        written.append(limited.log("k1", logging.WARNING, "bad %s", "again"))
    assert written == [True, False, False, False, False, True, True]
    assert [r.getMessage() for r in caplog.records] == [
        "bad 0 suppressed=0",
        "bad other suppressed=0",
        "bad again suppressed=4",
    ]


def test_slack_headers_checked_before_the_body() -> None:
    verifier = SlackVerifier("secret", now=lambda: 1_700_000_000.0)
    sig = "v0=" + "a" * 64
    assert verifier.plausible("1700000000", sig)
    assert not verifier.plausible("9" * 400, sig)  # once a 500
    assert not verifier.plausible("1699999000", sig)  # over 5 minutes old
    assert not verifier.plausible("1700000000", "v0=zz")
    assert not verifier.plausible("１７００００００００", sig)  # non-ASCII digits
    assert not verifier.verify(b"{}", "9" * 400, sig)
    assert header_token("Token abc", "token") == "abc" and header_token("Bearer x", "token") is None


def test_a_slack_ts_beyond_year_9999_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidEvent, match="bad_timestamp"):
        slack_time("999999999999.000001")


def test_dead_letters_of_events_keep_contract_fields_pseudonymised() -> None:
    def pseudonymise(raw: str) -> str:
        return "p-" + str(len(raw))

    body = orjson.dumps(
        {
            "schema_version": 1,
            "pseudonymised": True,
            "text": "envelope text",
            "events": [
                {"event_id": "e1", "actor_id": "anna@example.org", "text": "secret", "x": 1},
                {"event_id": "e2", "target_actor_id": 42, "space_id": "s" * 300},
                "not an event",
            ],
        }
    )
    letter = orjson.loads(redacted_events(body, pseudonymise))
    assert letter == {
        "redacted": True,
        "source": "events",
        "bytes": len(body),
        "schema_version": 1,
        "events": [
            {"event_id": "e1", "actor_id": "p-16", "fields_left_out": 2},
            {"event_id": "e2", "target_actor_id": "p-2", "space_id": "s" * 200},
            {"not_an_object": "str"},
        ],
    }
    assert b"anna" not in redacted_events(body, pseudonymise)
    unparseable = orjson.loads(redacted_events(b"anna@example.org says hi", pseudonymise))
    assert unparseable == {"redacted": True, "source": "events", "bytes": 24, "unparseable": True}
