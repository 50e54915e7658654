"""Hostile input: every bad message or event becomes a dead letter with its original bytes and
a reason from the closed set; good events beside it go on; nothing raises.

Fuzzed with hypothesis (arbitrary bytes, arbitrary JSON, single mutations of valid events with
the reason the contract prescribes, envelopes mixing good and bad events in varied JSON
formatting) and checked on a corpus with one known-bad message per category of hostile input
(docs/reliability.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.runtime import Runtime
from pipeline.contract.events import EVENT_TYPES, validate_event
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.metrics.enrich import (
    UNKNOWN_UNIT,
    Decoded,
    decode_message,
    directory_headcounts,
    enrich,
    parse_directory_entry,
)
from pipeline.ops.exporter import INVALID_REASONS
from tests.unit.test_ingest import GOOD

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
FUTURE_MS = 3_600_000
MAX_BYTES = 64 * 1024
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode(value: bytes | None) -> Decoded:
    return decode_message(value, NOW_MS, FUTURE_MS, MAX_BYTES)


def ev(**changes: Any) -> bytes:
    """GOOD with ``changes`` (a value of ``...`` removes the field), as JSON bytes."""
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


# One known-bad message per category of hostile input (docs/reliability.md), with its reason.
CORPUS: dict[str, tuple[bytes, str]] = {
    "not_json": (b"this is not json", "not_json"),
    "truncated_json": (ev()[:-7], "not_json"),
    "json_nan": (b'{"event_id": NaN}', "not_json"),
    "invalid_utf8": (b'{"event_id": "\xff\xfe", "event_type": "view"}', "invalid_utf8"),
    "invalid_utf8_not_json": (b"\xc3\x28 garbage", "invalid_utf8"),
    "json_array": (b"[1, 2, 3]", "not_an_object"),
    "json_string": (b'"just a string"', "not_an_object"),
    "json_number": (b"42", "not_an_object"),
    "json_null": (b"null", "not_an_object"),
    "nested_beyond_the_parser": (nested(2000), "not_json"),
    "nested_inside_a_field": (
        ev(actor_id=...)[:-1] + b',"actor_id":' + nested(500) + b"}",
        "wrong_type",
    ),
    "huge_document_long_field": (ev(actor_id="a" * 5000), "too_long"),
    "huge_document_many_fields": (
        orjson.dumps({**GOOD, **{f"x{i}": i for i in range(2000)}})[:-1] + b',"actor_id":7}',
        "wrong_type",
    ),
    "wrong_type_actor": (ev(actor_id=17), "wrong_type"),
    "wrong_type_event_type": (ev(event_type=["view"]), "wrong_type"),
    "wrong_type_optional": (ev(space_id={"id": "s1"}), "wrong_type"),
    "wrong_type_timestamp": (ev(occurred_at=1_767_225_600), "wrong_type"),
    "missing_actor": (ev(actor_id=...), "missing_field"),
    "missing_event_id": (ev(event_id=...), "missing_field"),
    "null_event_type": (ev(event_type=None), "missing_field"),
    "empty_actor": (ev(actor_id=""), "missing_field"),
    "empty_object": (b"{}", "missing_field"),
    "unknown_event_type": (ev(event_type="teleported"), "unknown_event_type"),
    "event_type_case": (ev(event_type="VIEW"), "unknown_event_type"),
    "far_future": (ev(occurred_at="9999-12-31T23:59:59Z"), "future_timestamp"),
    "future_beyond_tolerance": (ev(occurred_at="2027-01-15T09:00:01Z"), "future_timestamp"),
    "before_1970": (ev(occurred_at="1969-12-31T23:59:59.999Z"), "bad_timestamp"),
    "year_one": (ev(occurred_at="0001-01-01T00:00:00Z"), "bad_timestamp"),
    "year_zero": (ev(occurred_at="0000-01-01T00:00:00Z"), "bad_timestamp"),
    "not_a_date": (ev(occurred_at="2026-02-30T10:00:00Z"), "bad_timestamp"),
    "local_time": (ev(occurred_at="2026-11-24T09:15:02+01:00"), "bad_timestamp"),
    "trailing_newline_time": (ev(occurred_at="2026-11-24T09:15:02Z\n"), "bad_timestamp"),
    "epoch_number_as_text": (ev(occurred_at="1767225600"), "bad_timestamp"),
    "schema_version_2": (ev(schema_version=2), "bad_schema_version"),
    "schema_version_true": (ev(schema_version=True), "bad_schema_version"),
    "envelope_events_not_a_list": (b'{"events": {"0": {}}}', "bad_envelope"),
    "envelope_version_2": (b'{"schema_version": 2, "events": []}', "bad_envelope"),
    "oversized": (b'{"events": [' + b" " * MAX_BYTES + b"]}", "oversized"),
    "oversized_by_one_byte": (ev() + b" " * (MAX_BYTES + 1 - len(ev())), "oversized"),
    "empty_message": (b"", "empty"),
}


def test_corpus_covers_every_reason_but_none_other() -> None:
    # bad_pseudonym exists only inside pseudonymised envelopes: tests/unit/test_ingest.py
    assert {reason for _, reason in CORPUS.values()} == set(INVALID_REASONS) - {"bad_pseudonym"}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_known_bad_message_is_a_dead_letter_with_its_reason(name: str) -> None:
    value, reason = CORPUS[name]
    out = decode(value)
    assert out.events == []
    assert [(d.reason, d.payload, d.index) for d in out.dead] == [(reason, value, None)]


def test_message_at_the_size_limit_is_processed() -> None:
    value = ev()
    value += b" " * (MAX_BYTES - len(value))
    assert [e["event_id"] for e in decode(value).events] == ["e-1"]


def test_message_without_value_is_an_empty_dead_letter() -> None:
    assert [(d.reason, d.payload) for d in decode(None).dead] == [("empty", b"")]


def test_envelope_mixing_good_and_bad_keeps_the_good_and_the_original_bytes() -> None:
    bad_items = [
        b'{"event_id" : "b-1", "event_type" : "teleported", "occurred_at" : '
        b'"2026-11-24T09:15:02Z", "actor_id" : "x"}',
        b'"caf\\u00e9"',  # re-serialised it would read "café"
        b"1.50e2",  # re-serialised it would read 150.0
        nested(1020, b"{}"),  # deeper than orjson writes: crashed with RecursionError
        json.dumps({**GOOD, "occurred_at": "1960-01-01T00:00:00Z"}, indent=2).encode(),
    ]
    good_items = [ev(event_id=f"g-{i}") for i in range(4)]
    items = [good_items[0], bad_items[0], bad_items[1], good_items[1], bad_items[2]]
    items += [bad_items[3], good_items[2], bad_items[4], good_items[3]]
    value = b'{"schema_version":1,\n "events": [ ' + b" ,\n\t".join(items) + b"\n]}"
    out = decode(value)
    assert [e["event_id"] for e in out.events] == ["g-0", "g-1", "g-2", "g-3"]
    assert [(d.index, d.payload) for d in out.dead] == [
        (1, bad_items[0]),
        (2, bad_items[1]),
        (4, bad_items[2]),
        (5, bad_items[3]),
        (7, bad_items[4]),
    ]
    assert [d.reason for d in out.dead] == [
        "unknown_event_type",
        "not_an_object",
        "not_an_object",
        "not_an_object",
        "bad_timestamp",
    ]


def test_envelope_items_found_despite_tricky_keys_and_strings() -> None:
    """Brackets and commas inside strings, escaped keys, nested "events" keys and duplicate
    keys (the last wins, as in the parser) must not confuse where an item starts and ends."""
    bad = b'{"event_id":"x,]}[{","events":[1,2],"actor_id":"\\"]"}'
    value = (
        b'{"meta":{"events":[0]},"events":"first, overridden","x":"],[",'
        b'"\\u0065vents":[' + ev(event_id="g") + b"," + bad + b"]}"
    )
    out = decode(value)
    assert [e["event_id"] for e in out.events] == ["g"]
    assert [(d.index, d.payload, d.reason) for d in out.dead] == [(1, bad, "missing_field")]


# --------------------------------------------------------------------------------------------
# Fuzzing

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what JSON parsers read as integers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


def good_time(dt: datetime, digits: int, suffix: str) -> str:
    frac = f".{dt.microsecond:06d}"[: digits + 1] if digits else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + suffix


@st.composite
def good_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events that satisfy contract v1 (built from the contract's rules, not the validator)."""
    short = st.text(min_size=1, max_size=30)
    when = draw(st.datetimes(datetime(1970, 1, 1), NOW.replace(tzinfo=None)))
    doc: dict[str, Any] = {
        "event_id": draw(short),
        "event_type": draw(st.sampled_from(sorted(EVENT_TYPES))),
        "occurred_at": good_time(
            when, draw(st.integers(0, 6)), draw(st.sampled_from(["Z", "+00:00", "-00:00"]))
        ),
        "actor_id": draw(short),
    }
    for name in ("actor_unit", "space_id", "target_actor_id", "content_id", "idea_status"):
        choice = draw(st.sampled_from(["absent", "null", "text"]))
        if choice != "absent":
            doc[name] = None if choice == "null" else draw(st.text(max_size=30))
    if draw(st.booleans()):
        doc["schema_version"] = 1
    if draw(st.booleans()):
        doc["extension_field"] = draw(json_values)  # unknown fields are allowed
    return doc


REQUIRED = ("event_id", "event_type", "occurred_at", "actor_id")
LIMITED = {"event_id": 200, "actor_id": 320, "space_id": 200, "target_actor_id": 320}
non_strings = (
    st.integers(-(2**63), 2**64 - 1)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(json_leaf, max_size=2)
    | st.dictionaries(st.text(max_size=4), json_leaf, max_size=2)
)


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid event with one defect, and the reason the contract prescribes for it."""
    doc = draw(good_events())
    kind = draw(
        st.sampled_from(
            [
                "drop",
                "empty",
                "type",
                "optional_type",
                "long",
                "event_type",
                "bad_time",
                "old",
                "future",
                "version",
            ]
        )
    )
    if kind == "drop":
        del doc[draw(st.sampled_from(REQUIRED))]
        return doc, "missing_field"
    if kind == "empty":
        doc[draw(st.sampled_from(REQUIRED))] = ""
        return doc, "missing_field"
    if kind == "type":
        doc[draw(st.sampled_from(REQUIRED))] = draw(non_strings)
        return doc, "wrong_type"
    if kind == "optional_type":
        doc[draw(st.sampled_from(["actor_unit", "target_unit", "platform"]))] = draw(non_strings)
        return doc, "wrong_type"
    if kind == "long":
        name = draw(st.sampled_from(sorted(LIMITED)))
        doc[name] = "x" * (LIMITED[name] + draw(st.integers(1, 50)))
        return doc, "too_long"
    if kind == "event_type":
        doc["event_type"] = draw(
            st.text(min_size=1, max_size=40).filter(lambda t: t not in EVENT_TYPES)
        )
        return doc, "unknown_event_type"
    if kind == "bad_time":
        doc["occurred_at"] = draw(
            st.text(max_size=40).filter(lambda t: not t[:4].isdigit())
            | st.just(doc["occurred_at"] + draw(st.sampled_from(["\n", " ", "Z", "0"])))
        )
        return doc, "bad_timestamp" if doc["occurred_at"] else "missing_field"
    if kind == "old":
        when = draw(st.datetimes(datetime(1000, 1, 1), datetime(1969, 12, 31, 23, 59, 59)))
        doc["occurred_at"] = good_time(when, draw(st.integers(0, 3)), "Z")
        return doc, "bad_timestamp"
    if kind == "future":
        start = (NOW + timedelta(milliseconds=FUTURE_MS, seconds=1)).replace(tzinfo=None)
        when = draw(st.datetimes(start, datetime(9999, 12, 31, 23, 59, 59)))
        doc["occurred_at"] = good_time(when, 0, "Z")
        return doc, "future_timestamp"
    doc["schema_version"] = draw(
        st.integers(-(2**63), 2**63).filter(lambda v: v != 1)
        | st.text(max_size=5)
        | st.none()
        | st.just(True)
    )
    return doc, "bad_schema_version"


@st.composite
def formatted(draw: st.DrawFn, doc: object) -> bytes:
    """``doc`` as JSON bytes in one of several spellings, so re-serialising would differ."""
    style = draw(st.sampled_from(["orjson", "ascii", "indent", "spaced"]))
    if style == "orjson":
        return orjson.dumps(doc)
    if style == "ascii":
        return json.dumps(doc, ensure_ascii=True).encode()
    if style == "indent":
        return json.dumps(doc, ensure_ascii=False, indent=1).encode()
    return json.dumps(doc, ensure_ascii=False, separators=(" , ", " : ")).encode()


@st.composite
def item_bytes(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """(JSON bytes of one envelope item, expected dead-letter reason or None when good)."""
    kind = draw(st.sampled_from(["good", "mutated", "not_object", "deep"]))
    if kind == "good":
        return draw(formatted(draw(good_events()))), None
    if kind == "mutated":
        doc, reason = draw(mutated_events())
        return draw(formatted(doc)), reason
    if kind == "not_object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return draw(formatted(value)), "not_an_object"
    return nested(draw(st.integers(1, 1000))), "not_an_object"


def check_invariants(value: bytes, out: Decoded, structural: bool = True) -> None:
    """What holds for any input: a closed set of reasons, nothing lost, original bytes.

    ``structural``: also compare each dead item with the parsed envelope (Python's ``==``
    recurses, so not for items nested close to the parser's limit)."""
    assert all(d.reason in INVALID_REASONS for d in out.dead)
    whole = [d for d in out.dead if d.index is None]
    if whole:
        assert len(out.dead) == 1 and not out.events and whole[0].payload == value
        return
    doc = orjson.loads(value)
    if isinstance(doc, dict) and "events" in doc and "event_id" not in doc:
        items = doc["events"]
        assert len(out.events) + len(out.dead) == len(items)
        indexes = [d.index for d in out.dead]
        assert indexes == sorted(set(indexes)) and all(0 <= i < len(items) for i in indexes)
        for d in out.dead:
            assert d.index is not None and d.payload in value
            if structural:
                assert orjson.loads(d.payload) == items[d.index]
    else:
        assert len(out.events) == 1 and not out.dead
    for e in out.events:
        assert e["event_type"] in EVENT_TYPES and 0 <= e["ts"] <= NOW_MS + FUTURE_MS


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(value: bytes) -> None:
    check_invariants(value, decode(value))


@FUZZ
@given(json_values | st.dictionaries(st.sampled_from(["events", "schema_version"]), json_values))
def test_arbitrary_json(doc: object) -> None:
    value = orjson.dumps(doc)
    check_invariants(value, decode(value))


@FUZZ
@given(good_events().flatmap(formatted))
def test_valid_events_in_any_spelling_are_accepted(value: bytes) -> None:
    out = decode(value)
    assert not out.dead and len(out.events) == 1


@FUZZ
@given(mutated_events().flatmap(lambda m: st.tuples(formatted(m[0]), st.just(m[1]))))
def test_one_defect_gives_the_contract_reason(case: tuple[bytes, str]) -> None:
    value, reason = case
    out = decode(value)
    check_invariants(value, out)
    assert [(d.reason, d.payload) for d in out.dead] == [(reason, value)]


json_space = st.sampled_from([b"", b" ", b"\n", b"\t ", b"\r\n  "])


@FUZZ
@given(st.lists(item_bytes(), max_size=8), st.tuples(json_space, json_space, json_space))
def test_envelope_mixing_good_and_bad_events(
    items: list[tuple[bytes, str | None]], spaces: tuple[bytes, bytes, bytes]
) -> None:
    sep = spaces[0] + b"," + spaces[1]
    value = b'{"events":[' + spaces[2] + sep.join(b for b, _ in items) + spaces[1] + b"]}"
    out = decode(value)
    check_invariants(value, out, structural=False)
    assert len(out.events) == sum(reason is None for _, reason in items)
    expected = [(i, reason, b) for i, (b, reason) in enumerate(items) if reason is not None]
    assert [(d.index, d.reason, d.payload) for d in out.dead] == expected


@FUZZ
@given(st.integers(0, 1200), st.sampled_from([b"[", b'{"a":']), st.booleans())
def test_deep_nesting_never_raises(depth: int, opener: bytes, in_envelope: bool) -> None:
    closer = b"]" if opener == b"[" else b"}"
    doc = opener * depth + b"1" + closer * depth
    value = b'{"events":[' + doc + b"]}" if in_envelope else doc
    out = decode(value)
    check_invariants(value, out, structural=False)
    if in_envelope and depth + 2 <= 1024:  # the parser's limit
        assert [(d.index, d.payload) for d in out.dead] == [(0, doc)]


# --------------------------------------------------------------------------------------------
# Malformed directory records (the directory topic is written by other systems)

KEY = Pseudonymiser(b"k" * 32)
MALFORMED_DIRECTORY = {
    "not_json": b"not json",
    "invalid_utf8": b'{"unit": "\xff"}',
    "json_list": b'["IT"]',
    "json_string": b'"IT"',
    "json_null": b"null",
    "missing_unit": b'{"cohorts": ["digitisers"]}',
    "unit_null": b'{"unit": null}',
    "unit_number": b'{"unit": 5}',
    "unit_list": b'{"unit": ["IT"]}',
    "unit_object": b'{"unit": {"name": "IT"}}',
    "unit_empty": b'{"unit": ""}',
    "unit_too_long": orjson.dumps({"unit": "U" * 201}),
    "empty_value": b"",
}


def runtime_over(directory: dict[bytes, object]) -> Runtime:
    """A Runtime whose directory table is a plain dict (lookup uses nothing else)."""
    rt = Runtime.__new__(Runtime)
    rt.directory = directory
    rt.parsed = {}  # the lookup's cache of parsed values
    return rt


@pytest.mark.parametrize("name", sorted(MALFORMED_DIRECTORY))
def test_malformed_directory_record_means_unknown_unit(name: str) -> None:
    raw = MALFORMED_DIRECTORY[name]
    assert parse_directory_entry(raw) is None
    anna, jonas = KEY("anna@example.org"), KEY("jonas@example.org")
    rt = runtime_over({anna.encode(): raw, jonas.encode(): b'{"unit": "IT"}'})
    event = validate_event(orjson.loads(ev()), NOW_MS, FUTURE_MS)
    enrich(event, KEY, rt.lookup)  # the worker's lookup as it is, with the enrich rules
    assert event["actor_id"] == anna and event["actor_unit"] == UNKNOWN_UNIT
    assert event["target_unit"] == "IT"


def test_directory_entries_that_count() -> None:
    assert parse_directory_entry(b'{"unit": "IT", "cohorts": []}') == {"unit": "IT", "cohorts": []}
    assert parse_directory_entry({"unit": "Vertrieb"}) == {"unit": "Vertrieb"}
    assert parse_directory_entry(orjson.dumps({"unit": "U" * 200})) is not None
    records: list[tuple[object, object]] = [
        (b"k-%d" % i, raw) for i, raw in enumerate(MALFORMED_DIRECTORY.values())
    ]
    records += [
        (b"p1", b'{"unit": "IT"}'),
        (b"p2", b'{"unit": "IT", "location": "Berlin"}'),
        (b"p3", b'{"unit": "Vertrieb"}'),
        (b"", b'{"unit": "IT"}'),  # no person
        (None, b'{"unit": "IT"}'),
        (b"\xff\xfe", b'{"unit": "Einkauf"}'),  # not UTF-8: no pseudonym, no person
        ("p5", b'{"unit": "Einkauf"}'),  # keys may also come as text
        (b"p4", None),  # deleted (tombstone)
    ]
    assert directory_headcounts(records) == {"IT": 2, "Vertrieb": 1, "Einkauf": 1}


@FUZZ
@given(st.binary(max_size=60) | json_values.map(orjson.dumps))
def test_any_directory_value_is_an_entry_or_none(raw: bytes) -> None:
    entry = parse_directory_entry(raw)
    assert entry is None or (isinstance(entry["unit"], str) and 0 < len(entry["unit"]) <= 200)
    looked_up = runtime_over({b"p": raw}).lookup("p")
    assert looked_up is None or isinstance(looked_up, dict)
