"""Ingest: raw Kafka message bytes -> valid, pseudonymised, enriched events + dead letters.

Pure functions over one message, so the worker's agent is thin wiring and every rule is
testable without Kafka. A message is either one event or an envelope ``{"events": [...]}``;
in an envelope each event stands on its own: a bad one becomes a dead letter, its good
neighbours go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.contract import validate_event
from pipeline.errors import InvalidEvent
from pipeline.pseudonym import Pseudonymiser

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


def decode_message(
    value: bytes | None, now_ms: int, future_tolerance_ms: int, max_bytes: int
) -> Decoded:
    """Decode and validate one Kafka message value; never raises for bad input."""
    out = Decoded()
    if value is None:
        out.dead.append(DeadLetter("empty", "message has no value", b""))
        return out
    if len(value) > max_bytes:
        out.dead.append(DeadLetter("oversized", f"{len(value)} bytes > limit {max_bytes}", value))
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
        for i, item in enumerate(items):
            try:
                out.events.append(validate_event(item, now_ms, future_tolerance_ms))
            except InvalidEvent as exc:
                out.dead.append(DeadLetter(exc.reason, exc.detail, _dump(item), index=i))
        return out
    try:
        out.events.append(validate_event(doc, now_ms, future_tolerance_ms))
    except InvalidEvent as exc:
        out.dead.append(DeadLetter(exc.reason, exc.detail, value))
    return out


def _bad_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _dump(item: object) -> bytes:
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode()


DirectoryLookup = Callable[[str], Mapping[str, Any] | None]


def enrich(
    event: dict[str, Any], pseudonymise: Pseudonymiser, directory: DirectoryLookup
) -> dict[str, Any]:
    """Replace raw person ids by pseudonyms (in place) and fill missing units from the directory.

    Events whose person the directory does not know keep their own unit or get ``unknown``:
    counted, never dropped. Returns the same dict for chaining.
    """
    actor = pseudonymise(event["actor_id"])
    event["actor_id"] = actor
    if not event["actor_unit"]:
        entry = directory(actor)
        event["actor_unit"] = (entry or {}).get("unit") or UNKNOWN_UNIT
    raw_target = event["target_actor_id"]
    if raw_target:
        target = pseudonymise(raw_target)
        event["target_actor_id"] = target
        if not event["target_unit"]:
            entry = directory(target)
            event["target_unit"] = (entry or {}).get("unit") or UNKNOWN_UNIT
    return event


def partition_for(actor_pseudonym: str, partitions: int) -> int:
    """Partition of the activity topic for an actor: all of a person's events in one place.

    Keeps distinct counts exact across workers (DESIGN.md: partition by actor). Uses the
    pseudonym's own hex digits, which are uniformly distributed, so no extra hashing.
    """
    return int(actor_pseudonym[:8], 16) % partitions
