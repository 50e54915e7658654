"""Ingest: raw Kafka message bytes -> valid, pseudonymised, enriched events + dead letters.

Pure functions over one message, so the worker's agent is thin wiring and every rule is
testable without Kafka. A message is either one event or an envelope ``{"events": [...]}``;
in an envelope each event stands on its own: a bad one becomes a dead letter, its good
neighbours go on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.contract.events import decode_valid_envelope, validate_event
from pipeline.contract.pseudonym import PSEUDONYM_HEX_CHARS, Pseudonymiser
from pipeline.errors import InvalidEvent

UNKNOWN_UNIT = "unknown"
MAX_NESTING_HINT = 64  # orjson itself refuses documents nested deeper than 1024 levels


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input that broke the contract: its original bytes and why."""

    reason: str
    detail: str
    payload: bytes
    index: int | None = None  # position inside an envelope, None for a whole message


@dataclass(slots=True)
class Decoded:
    """Outcome of decoding one Kafka message."""

    events: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    end_of_input: bool = False  # the envelope ends its input partition (bounded input)
    pseudonymised: bool = False  # person ids were pseudonymised by the sender (import, webhook)


def decode_message(
    value: bytes | None, now_ms: int, future_tolerance_ms: int, max_bytes: int
) -> Decoded:
    """Decode and validate one Kafka message value; never raises for bad input."""
    out = Decoded()
    if not value:
        out.dead.append(DeadLetter("empty", "message has no value", value or b""))
        return out
    if len(value) > max_bytes:
        out.dead.append(DeadLetter("oversized", f"{len(value)} bytes > limit {max_bytes}", value))
        return out
    if value[:1] == b"{":  # the common case, an envelope of valid events: one pass in C
        valid = decode_valid_envelope(value, now_ms, future_tolerance_ms)
        if valid is not None and (not valid.pseudonymised or _all_pseudonyms(valid.events)):
            out.events = valid.events
            out.end_of_input = valid.end_of_input
            out.pseudonymised = valid.pseudonymised
            return out
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if _bad_utf8(value) else "not_json"
        out.dead.append(DeadLetter(reason, str(exc)[:200], value))
        return out
    if isinstance(doc, dict) and "events" in doc and "event_id" not in doc:
        items = doc["events"]
        if not isinstance(items, list) or doc.get("schema_version", 1) != 1:
            out.dead.append(DeadLetter("bad_envelope", "events must be a list (v1)", value))
            return out
        end = doc.get("end_of_input", False)
        if not isinstance(end, bool):
            out.dead.append(DeadLetter("bad_envelope", "end_of_input must be true or false", value))
            return out
        out.end_of_input = end
        pseudonymised = doc.get("pseudonymised", False)
        if not isinstance(pseudonymised, bool):
            detail = "pseudonymised must be true or false"
            out.dead.append(DeadLetter("bad_envelope", detail, value))
            return out
        out.pseudonymised = pseudonymised
        spans: list[bytes] | None = None  # items' original bytes, found once one is bad
        for i, item in enumerate(items):
            try:
                event = validate_event(item, now_ms, future_tolerance_ms)
                if pseudonymised:
                    check_pseudonyms(event)
                out.events.append(event)
            except InvalidEvent as exc:
                if spans is None:
                    spans = _envelope_items(value)
                    if len(spans) != len(items):  # cannot happen for JSON orjson accepted
                        spans = [_dump(it) for it in items]
                out.dead.append(DeadLetter(exc.reason, exc.detail, spans[i], index=i))
        return out
    try:
        out.events.append(validate_event(doc, now_ms, future_tolerance_ms))
    except InvalidEvent as exc:
        out.dead.append(DeadLetter(exc.reason, exc.detail, value))
    return out


_PSEUDONYM = re.compile(rf"[0-9a-f]{{{PSEUDONYM_HEX_CHARS}}}")


def _all_pseudonyms(events: list[dict[str, Any]]) -> bool:
    try:
        for event in events:
            check_pseudonyms(event)
    except InvalidEvent:
        return False
    return True


def check_pseudonyms(event: Mapping[str, Any]) -> None:
    """Raise ``bad_pseudonym`` unless the event's person ids are pseudonyms.

    An envelope marked ``"pseudonymised": true`` skips the worker's HMAC; a raw id in it
    would otherwise reach the facts, so anything that does not look like one is refused.
    """
    for name in ("actor_id", "target_actor_id"):
        value = event.get(name)
        if value and not _PSEUDONYM.fullmatch(value):
            detail = f"{name} is not a pseudonym in a pseudonymised envelope"
            raise InvalidEvent("bad_pseudonym", detail)


def _bad_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _dump(item: object) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:  # nested deeper than orjson writes: no repr either (recursion)
        return b""


# A JSON string (escapes included) or one structural character: enough to walk valid JSON.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_JSON_WS = b" \t\r\n"


def _envelope_items(value: bytes) -> list[bytes]:
    """The original bytes of each item of the top-level ``"events"`` array of valid JSON.

    A dead letter must carry what the producer sent, not a re-serialisation (which would
    change escapes, number forms and spacing, and fails for very deep items). Walks the
    structural characters without recursion; duplicate keys resolve as in ``orjson`` (last).
    """
    found: list[bytes] = []
    items: list[bytes] = []
    depth = 0
    expect_key = False
    key: object = None
    in_events = False
    last = 0
    for m in _TOKEN.finditer(value):
        c = value[m.start()]
        if c == 0x22:  # '"'
            if depth == 1 and expect_key:
                key = orjson.loads(m.group())
                expect_key = False
            continue
        if c in b"{[":
            if depth == 1 and c == 0x5B and key == "events":  # '['
                in_events, items, last = True, [], m.start()
            depth += 1
            expect_key = depth == 1 and c == 0x7B  # '{'
        elif c in b"}]":
            if in_events and depth == 2:
                item = value[last + 1 : m.start()].strip(_JSON_WS)
                if item:
                    items.append(item)
                found, in_events = items, False
            depth -= 1
        elif c == 0x2C:  # ','
            if in_events and depth == 2:
                items.append(value[last + 1 : m.start()].strip(_JSON_WS))
                last = m.start()
            elif depth == 1:
                expect_key, key = True, None
    return found


DirectoryLookup = Callable[[str], Mapping[str, Any] | None]
MAX_UNIT_CHARS = 200  # as the contract's actor_unit


def parse_directory_entry(raw: object) -> dict[str, Any] | None:
    """A directory record's value as a dict with a usable ``unit``, else None.

    The directory topic is written by other systems, so a value may be anything: not JSON,
    JSON that is not an object, without a unit, or with a unit that is not a non-empty string
    of at most ``MAX_UNIT_CHARS``. Such a record counts as "person unknown", never as an error.
    """
    if isinstance(raw, bytes | bytearray | memoryview | str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(raw, dict):
        return None
    unit = raw.get("unit")
    if not isinstance(unit, str) or not unit or len(unit) > MAX_UNIT_CHARS:
        return None
    return raw


def directory_entries(records: Iterable[tuple[object, object]]) -> dict[str, dict[str, Any]]:
    """Valid directory records as person pseudonym -> entry; malformed ones are left out.

    A key names a person by pseudonym, so one that is empty or not UTF-8 (no event can ever
    name it) is malformed like a value without a unit.
    """
    out: dict[str, dict[str, Any]] = {}
    for key, value in records:
        if isinstance(key, bytes):
            try:
                key = key.decode()
            except UnicodeDecodeError:
                continue
        if not key or not isinstance(key, str):
            continue
        entry = parse_directory_entry(value)
        if entry is not None:
            out[key] = entry
    return out


def directory_headcounts(records: Iterable[tuple[object, object]]) -> Counter[str]:
    """People per unit from (key, value) directory records; malformed ones are left out."""
    return Counter(entry["unit"] for entry in directory_entries(records).values())


def _unit(entry: Mapping[str, Any] | None) -> str:
    unit = entry.get("unit") if entry is not None else None
    if isinstance(unit, str) and unit and len(unit) <= MAX_UNIT_CHARS:
        return unit
    return UNKNOWN_UNIT


def enrich(
    event: dict[str, Any],
    pseudonymise: Pseudonymiser,
    directory: DirectoryLookup,
    *,
    pseudonymised: bool = False,
) -> dict[str, Any]:
    """Replace raw person ids by pseudonyms (in place) and fill missing units from the directory.

    ``pseudonymised``: the sender already did it with the same key (``teilhabe import``,
    webhooks), so the ids are kept. Events whose person the directory does not know (or whose
    record has no usable unit) keep their own unit or get ``unknown``: counted, never dropped.
    Returns the same dict for chaining.
    """
    actor = event["actor_id"] if pseudonymised else pseudonymise(event["actor_id"])
    event["actor_id"] = actor
    if not event.get("actor_unit"):
        event["actor_unit"] = _unit(directory(actor))
    raw_target = event.get("target_actor_id")
    if raw_target:
        target = raw_target if pseudonymised else pseudonymise(raw_target)
        event["target_actor_id"] = target
        if not event.get("target_unit"):
            event["target_unit"] = _unit(directory(target))
    return event


def partition_for(actor_pseudonym: str, partitions: int) -> int:
    """Partition of the activity topic for an actor: all of a person's events in one place.

    Keeps distinct counts exact across workers (docs/design.md: partition by actor). Uses the
    pseudonym's own hex digits, which are uniformly distributed, so no extra hashing.
    """
    return int(actor_pseudonym[:8], 16) % partitions


# --- Opt-out (docs/privacy.md, "Opt-out") ------------------------------------------------------

#: What an opted-out person's pseudonym becomes where they are only the target of someone
#: else's event: the same word as an erased person's (``pipeline.sinks.erasure.FORGOTTEN``), so
#: the interaction still counts between units but names nobody.
OPTED_OUT_TARGET = "forgotten"


def parse_opt_out(text: str) -> list[str]:
    """The person ids of an opt-out file: one per line, surrounding blanks trimmed; blank lines
    and lines starting with ``#`` are skipped (an id itself may hold ``#``)."""
    out: list[str] = []
    for line in text.splitlines():
        person = line.strip()
        if person and not person.startswith("#"):
            out.append(person)
    return out


def opt_out_pseudonyms(people: Iterable[str], pseudonymise: Pseudonymiser) -> frozenset[str]:
    """The pseudonyms of ``people`` (raw ids, normalised by the Pseudonymiser first)."""
    return frozenset(pseudonymise(person) for person in people)


def apply_opt_out(event: dict[str, Any], opted_out: frozenset[str] | set[str]) -> bool:
    """After ``enrich`` (ids are pseudonyms): False when the actor opted out (drop the event);
    otherwise True, with an opted-out target replaced by ``OPTED_OUT_TARGET`` in place (the
    target unit stays)."""
    if not opted_out:
        return True
    if event["actor_id"] in opted_out:
        return False
    if event.get("target_actor_id") in opted_out:
        event["target_actor_id"] = OPTED_OUT_TARGET
    return True
