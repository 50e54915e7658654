"""Contract validation (fast path vs the JSON Schema), dead letters, pseudonymisation."""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.events import (
    EVENT_TYPES,
    OPTIONAL_FIELDS,
    load_schema,
    parse_time_ms,
    validate_event,
)
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.errors import InvalidEvent
from pipeline.metrics.enrich import decode_message, enrich, partition_for

NOW_MS = 1_800_000_000_000
FUTURE_MS = 3_600_000
GOOD = {
    "event_id": "e-1",
    "event_type": "reply_created",
    "occurred_at": "2026-11-24T09:15:02.250Z",
    "actor_id": "anna@example.org",
    "target_actor_id": "jonas@example.org",
    "space_id": "s1",
}
SCHEMA_VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def decode(value: bytes) -> Any:
    return decode_message(value, NOW_MS, FUTURE_MS, max_bytes=10_000)


def test_good_event_normalised() -> None:
    out = validate_event(dict(GOOD), NOW_MS, FUTURE_MS)
    assert out["ts"] == int(datetime(2026, 11, 24, 9, 15, 2, 250000, tzinfo=UTC).timestamp() * 1000)
    assert out["actor_unit"] is None and out["event_type"] == "reply_created"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b"[1,2]", "not_an_object"),
        (b"42", "not_an_object"),
        (orjson.dumps({**GOOD, "event_type": "teleported"}), "unknown_event_type"),
        (orjson.dumps({k: v for k, v in GOOD.items() if k != "actor_id"}), "missing_field"),
        (orjson.dumps({**GOOD, "actor_id": 7}), "wrong_type"),
        (orjson.dumps({**GOOD, "occurred_at": "yesterday"}), "bad_timestamp"),
        (orjson.dumps({**GOOD, "occurred_at": "2026-11-24T09:15:02+01:00"}), "bad_timestamp"),
        (orjson.dumps({**GOOD, "occurred_at": "2099-01-01T00:00:00Z"}), "future_timestamp"),
        (orjson.dumps({**GOOD, "occurred_at": "1960-01-01T00:00:00Z"}), "bad_timestamp"),
        (orjson.dumps({**GOOD, "event_id": "x" * 201}), "too_long"),
        (b"{" + b" " * 20_000 + b"}", "oversized"),
        (orjson.dumps({"events": "nope"}), "bad_envelope"),
    ],
)
def test_bad_messages_become_dead_letters_with_reason(value: bytes, reason: str) -> None:
    out = decode(value)
    assert not out.events
    assert [d.reason for d in out.dead] == [reason]
    assert out.dead[0].payload == value or out.dead[0].index is not None


def test_envelope_keeps_good_neighbours_of_a_bad_event() -> None:
    bad = {**GOOD, "event_id": "e-2", "event_type": "nope"}
    env = orjson.dumps({"events": [GOOD, bad, {**GOOD, "event_id": "e-3"}]})
    out = decode(env)
    assert [e["event_id"] for e in out.events] == ["e-1", "e-3"]
    assert [(d.reason, d.index) for d in out.dead] == [("unknown_event_type", 1)]
    assert orjson.loads(out.dead[0].payload) == bad


def test_deeply_nested_document_is_a_dead_letter_not_a_crash() -> None:
    out = decode(b"[" * 5000 + b"]" * 5000)
    assert [d.reason for d in out.dead] == ["not_json"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=5,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(sorted(EVENT_TYPES)),
    st.sampled_from(
        ["2026-11-24T09:15:02Z", "2026-11-24T09:15:02.1+00:00", "2026-13-40T99:00:00Z"]
    ),
)
candidate = st.fixed_dictionaries(
    {},
    optional={
        k: field_values
        for k in [
            "event_id",
            "event_type",
            "occurred_at",
            "actor_id",
            "actor_unit",
            "target_actor_id",
            "space_id",
            "content_id",
            "schema_version",
        ]
    },
)


@settings(max_examples=500, deadline=None)
@given(candidate)
def test_fast_validator_agrees_with_the_json_schema(doc: dict[str, Any]) -> None:
    """The hot-path validator accepts exactly what the published JSON Schema accepts
    (time range checks aside, which a schema cannot express)."""
    schema_ok = SCHEMA_VALIDATOR.is_valid(doc)
    try:
        validate_event(doc, NOW_MS, 10**15)
        fast_ok = True
    except InvalidEvent as exc:
        fast_ok = False
        if exc.reason == "bad_timestamp" and schema_ok:
            return  # calendar-invalid dates match the pattern but are not times
    assert fast_ok == schema_ok, doc


def test_parse_time_fractions() -> None:
    assert parse_time_ms("1970-01-01T00:00:01.5Z") == 1500
    assert parse_time_ms("1970-01-01T00:00:01.123456789+00:00") == 1123


def test_pseudonym_is_keyed_stable_and_not_a_plain_hash() -> None:
    p1, p2 = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    assert p1("anna") == p1("anna") != p1("jonas")
    assert p1("anna") != p2("anna")
    assert p1("anna") != sha256(b"anna").hexdigest()[:32]
    assert p1("anna") == hmac.new(b"k" * 32, b"anna", sha256).hexdigest()[:32]
    assert len(p1("anna")) == 32 and "anna" not in p1("anna")


def test_enrich_pseudonymises_and_fills_units_from_directory() -> None:
    p = Pseudonymiser(b"k" * 32)
    directory = {p("anna@example.org"): {"unit": "IT"}}
    ev = enrich(validate_event(dict(GOOD), NOW_MS, FUTURE_MS), p, directory.get)
    assert ev["actor_id"] == p("anna@example.org") and ev["actor_unit"] == "IT"
    assert ev["target_actor_id"] == p("jonas@example.org") and ev["target_unit"] == "unknown"
    assert "anna" not in orjson.dumps(ev).decode()


def test_partition_by_actor_is_stable_and_spread() -> None:
    p = Pseudonymiser(b"k" * 32)
    parts = [partition_for(p(f"user{i}"), 4) for i in range(400)]
    assert parts == [partition_for(p(f"user{i}"), 4) for i in range(400)]
    assert all(60 < parts.count(k) < 140 for k in range(4))


def test_end_of_input_envelope_is_recognised_and_checked() -> None:
    from pipeline.sources.producer import END_OF_INPUT

    marker = decode(END_OF_INPUT)
    assert marker.end_of_input and not marker.events and not marker.dead
    with_events = decode(orjson.dumps({"events": [GOOD], "end_of_input": True}))
    assert with_events.end_of_input and len(with_events.events) == 1
    assert not decode(orjson.dumps({"events": [GOOD]})).end_of_input
    bad = decode(orjson.dumps({"events": [], "end_of_input": "yes"}))
    assert [d.reason for d in bad.dead] == ["bad_envelope"] and not bad.end_of_input
    doc = orjson.loads(END_OF_INPUT)
    jsonschema.Draft202012Validator(load_schema("envelope.v1.json")).validate(doc)


def test_pseudonymised_envelope_keeps_pseudonyms_and_refuses_raw_ids() -> None:
    p = Pseudonymiser(b"k" * 32)
    pre = dict(GOOD, actor_id=p("anna@example.org"), target_actor_id=p("jonas@example.org"))
    decoded = decode(orjson.dumps({"events": [pre, GOOD], "pseudonymised": True}))
    assert decoded.pseudonymised and len(decoded.events) == 1
    # the raw-id event is refused, not hashed: a sender's mistake must not pass silently
    assert [(d.reason, d.index) for d in decoded.dead] == [("bad_pseudonym", 1)]
    directory = {p("anna@example.org"): {"unit": "IT"}}
    ev = enrich(decoded.events[0], p, directory.get, pseudonymised=True)
    assert ev["actor_id"] == p("anna@example.org") and ev["actor_unit"] == "IT"
    assert ev["target_actor_id"] == p("jonas@example.org")
    # the same event without the flag is hashed once more (a different id)
    plain = decode(orjson.dumps({"events": [pre]}))
    assert not plain.pseudonymised
    assert enrich(plain.events[0], p, directory.get)["actor_id"] != p("anna@example.org")
    bad_flag = decode(orjson.dumps({"events": [pre], "pseudonymised": "yes"}))
    assert [d.reason for d in bad_flag.dead] == ["bad_envelope"] and not bad_flag.events
    envelope = {"events": [], "pseudonymised": True}
    jsonschema.Draft202012Validator(load_schema("envelope.v1.json")).validate(envelope)


valid_event = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=8),
        "event_type": st.sampled_from(sorted(EVENT_TYPES)),
        "occurred_at": st.sampled_from(
            [
                "2026-11-24T09:15:02Z",
                "2026-11-24T09:15:02.123456+00:00",
                "1970-01-01T00:00:00-00:00",
            ]
        ),
        "actor_id": st.text(min_size=1, max_size=8),
    },
    optional={"actor_unit": st.none() | st.text(max_size=5), "space_id": st.text(max_size=3)},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(valid_event, candidate), max_size=6), st.booleans())
def test_one_pass_envelope_path_equals_the_event_by_event_path(
    items: list[dict[str, Any]], end: bool
) -> None:
    """``decode_message`` takes an envelope of only valid events in one pass (msgspec); it
    must give what the event-by-event rules give, and refuse any envelope they would not
    pass whole (then those rules judge it)."""
    from pipeline.contract.events import decode_valid_envelope

    doc = {"schema_version": 1, "events": items, "end_of_input": end}
    value = json.dumps(doc, ensure_ascii=False).encode()  # any int, as a producer may send
    fast = decode_valid_envelope(value, NOW_MS, FUTURE_MS)
    slow: list[dict[str, Any]] = []
    try:
        slow = [validate_event(item, NOW_MS, FUTURE_MS) for item in items]
        all_valid = True
    except InvalidEvent:
        all_valid = False
    assert (fast is not None) == all_valid, items
    if fast is not None:  # the same events, optional fields left out rather than None
        nones = dict.fromkeys(OPTIONAL_FIELDS)
        assert [{**nones, **ev} for ev in fast.events] == slow
        assert fast.end_of_input == end
    out = decode_message(value, NOW_MS, FUTURE_MS, 1 << 20)
    assert len(out.events) + len(out.dead) == len(items) and out.end_of_input == end
