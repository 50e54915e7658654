"""What goes to Kafka from every endpoint (the generic one takes contract events and
envelopes): validation, pseudonymised events in envelopes, redacted dead letters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import orjson

from pipeline.contract.events import OPTIONAL_FIELDS, validate_event
from pipeline.contract.records import Envelope, TooLarge, pack
from pipeline.sources.connectors.base import RawEvent
from pipeline.sources.webhooks.payload import SLACK


def validate_all(
    events: Iterable[Mapping[str, Any]], now_ms: int, future_ms: int
) -> list[RawEvent]:
    """Each event checked against contract v1 (the first failure raises InvalidEvent)."""
    return [validate_event(ev, now_ms, future_ms) for ev in events]


def outgoing(
    events: Iterable[Mapping[str, Any]],
    pseudonymise: Callable[[str], str],
    already: bool = False,
) -> list[RawEvent]:
    """Validated events as sent on: set fields only, person ids pseudonymised (``already``:
    the sender did it with the same key, they are kept)."""
    out = []
    for ev in events:
        doc = {k: v for k, v in ev.items() if v is not None and k != "ts"}
        if not already:
            doc["actor_id"] = pseudonymise(doc["actor_id"])
            if "target_actor_id" in doc:
                doc["target_actor_id"] = pseudonymise(doc["target_actor_id"])
        out.append(doc)
    return out


#: Envelopes of the webhook endpoints: person ids pseudonymised by the worker already.
ENVELOPE_HEAD: Final = b'{"schema_version":1,"pseudonymised":true,"events":['
ENVELOPE_TAIL: Final = b"]}"


def envelopes(events: Iterable[Mapping[str, Any]], max_bytes: int) -> list[Envelope | TooLarge]:
    """Pseudonymised events as envelope values of at most ``max_bytes`` each
    (``pipeline.contract.records``); an event too large for one alone comes back as ``TooLarge``."""
    items = (orjson.dumps(ev) for ev in events)
    return list(pack(items, ENVELOPE_HEAD, ENVELOPE_TAIL, max_bytes))


_SLACK_KEEP: Final = ("type", "event_id", "event_time", "team_id", "api_app_id")
_SLACK_EVENT_KEEP: Final = ("type", "subtype", "channel", "channel_type", "ts", "thread_ts")
_MATTERMOST_KEEP: Final = ("team_id", "channel_id", "post_id", "timestamp")


def redacted(source: str, doc: Mapping[str, Any] | None) -> bytes:
    """A dead letter of a platform payload: only fields that name no person and hold no text
    (ids of the event, channel and message, its times), so nothing private is written."""

    def scalars(d: Mapping[str, Any], keep: Sequence[str]) -> dict[str, Any]:
        return {
            k: d[k][:200] if isinstance(d[k], str) else d[k]
            for k in keep
            if isinstance(d.get(k), str | int | float | bool)
        }

    out: dict[str, Any] = {"redacted": True, "source": source}
    if doc is None:
        out["unparseable"] = True
    elif source == SLACK:
        out.update(scalars(doc, _SLACK_KEEP))
        if isinstance(doc.get("event"), dict):
            out["event"] = scalars(doc["event"], _SLACK_EVENT_KEEP)
    else:
        out.update(scalars(doc, _MATTERMOST_KEEP))
    return orjson.dumps(out)


_PERSON_FIELDS: Final = frozenset({"actor_id", "target_actor_id"})
_EVENT_KEEP: Final = ("event_id", "event_type", "occurred_at", "actor_id", *OPTIONAL_FIELDS)
_MAX_DEAD_EVENTS: Final = 1000


def redacted_events(body: bytes, pseudonymise: Callable[[str], str]) -> bytes:
    """A dead letter of a refused ``/v1/events`` body, never its raw bytes: of each event the
    contract's fields only (strings cut to 200 characters), person ids pseudonymised with the
    ingest's key whatever the envelope claims (an unverified ``"pseudonymised": true`` may
    carry raw ids; a real pseudonym is only hashed once more), any other field left out."""
    out: dict[str, Any] = {"redacted": True, "source": "events", "bytes": len(body)}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        out["unparseable"] = True
        return orjson.dumps(out)
    if isinstance(doc, dict) and isinstance(doc.get("events"), list):
        items: list[Any] = doc["events"]
        if isinstance(doc.get("schema_version"), int):
            out["schema_version"] = doc["schema_version"]
    else:
        items = [doc]
    out["events"] = [_dead_event(ev, pseudonymise) for ev in items[:_MAX_DEAD_EVENTS]]
    if len(items) > _MAX_DEAD_EVENTS:
        out["events_left_out"] = len(items) - _MAX_DEAD_EVENTS
    return orjson.dumps(out)


def _dead_event(ev: object, pseudonymise: Callable[[str], str]) -> dict[str, Any]:
    if not isinstance(ev, dict):
        return {"not_an_object": type(ev).__name__}
    kept: dict[str, Any] = {}
    for name in _EVENT_KEEP:
        value = ev.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            continue
        if name in _PERSON_FIELDS:
            kept[name] = pseudonymise(str(value))
        else:
            kept[name] = value[:200] if isinstance(value, str) else value
    left_out = len([k for k in ev if k not in kept])
    if left_out:
        kept["fields_left_out"] = left_out
    return kept
