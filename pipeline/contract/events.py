"""Fast validation of contract v1 events (schemas/event.v1.json) into normalised records.

The JSON Schema is the contract for producers; this module is the hot-path implementation of
the same rules (a test checks both agree on randomised input). Checking by hand costs a fraction
of a general validator and yields the parsed event time at the same time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict

import msgspec

from pipeline.errors import InvalidEvent

EVENT_TYPES: Final = frozenset(
    {
        "post_created",
        "reply_created",
        "reaction_added",
        "mention",
        "share",
        "view",
        "idea_submitted",
        "idea_voted",
        "idea_commented",
        "idea_status_changed",
        "member_joined",
        "member_left",
    }
)
#: Event types that are contributions (Nielsen's "contributors"); views and joins are not. The
#: one definition: the ClickHouse views get it as ``{contribution_types}`` (sinks/migrate.py).
CONTRIBUTION_TYPES: Final = frozenset(
    {"post_created", "reply_created", "idea_submitted", "idea_commented", "share"}
)
#: An interaction is a tie between two people (docs/design.md, cross-silo); the views get it as
#: ``{interaction_types}``.
INTERACTION_TYPES: Final = frozenset({"reply_created", "reaction_added", "mention", "share"})

_MAX_LEN: Final = {
    "event_id": 200,
    "actor_id": 320,
    "actor_unit": 200,
    "space_id": 200,
    "platform": 100,
    "target_actor_id": 320,
    "target_unit": 200,
    "content_id": 200,
    "parent_content_id": 200,
    "root_content_id": 200,
    "idea_status": 100,
}
_REQUIRED: Final = ("event_id", "event_type", "occurred_at", "actor_id")
OPTIONAL_FIELDS: Final = (
    "actor_unit",
    "space_id",
    "platform",
    "target_actor_id",
    "target_unit",
    "content_id",
    "parent_content_id",
    "root_content_id",
    "idea_status",
)
MIN_TS_MS: Final = 0  # 1970-01-01: earlier timestamps are rejected as absurd


@lru_cache(maxsize=4)
def load_schema(name: str = "event.v1.json") -> dict[str, Any]:
    """The JSON Schema document shipped in ``schemas/`` (for docs, tests and producers)."""
    return dict(json.loads(resources.files("schemas").joinpath(name).read_text()))


_TIME_PARTS: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(?:Z|[+-]00:00)"
)
#: 'YYYY-MM-DDTHH:MM' -> epoch ms of that minute, and ':SS[.fff...](Z|+00:00|-00:00)' -> ms
#: into the minute. The regular expression splits a time into exactly these two parts (the
#: first is of fixed length), so a time whose two parts were both seen in valid times is
#: valid: events come roughly in time order, and nearly every time is two dictionary
#: lookups. Both caches are emptied when full (bounded memory).
_MINUTES: dict[str, int] = {}
_SECONDS: dict[str, int] = {}
_CACHE_MAX: Final = 65_536


def parse_time_ms(value: str) -> int:
    """Parse an RFC 3339 UTC timestamp into epoch milliseconds; InvalidEvent when malformed."""
    base = _MINUTES.get(value[:16])
    if base is not None:
        into = _SECONDS.get(value[16:])
        if into is not None:
            return base + into
    m = _TIME_PARTS.fullmatch(value)  # not match: "$" also matches before a final \n
    if m is None:
        raise InvalidEvent(
            "bad_timestamp", "occurred_at must be RFC 3339 UTC, e.g. 2026-11-24T09:15:02Z"
        )
    minute, sec, frac = m.groups()
    seconds = int(sec)
    if seconds > 59:
        raise InvalidEvent("bad_timestamp", "second must be in 0..59")
    if base is None:
        try:
            base = int(datetime.fromisoformat(minute + ":00+00:00").timestamp()) * 1000
        except ValueError as exc:
            raise InvalidEvent("bad_timestamp", str(exc)) from None
        if len(_MINUTES) >= _CACHE_MAX:
            _MINUTES.clear()
        _MINUTES[minute] = base
    into = seconds * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)
    if len(_SECONDS) >= _CACHE_MAX:
        _SECONDS.clear()
    _SECONDS[value[16:]] = into
    return base + into


_OPTIONAL_LIMITS: Final = tuple((name, _MAX_LEN[name]) for name in OPTIONAL_FIELDS)


def validate_event(obj: object, now_ms: int, future_tolerance_ms: int) -> dict[str, Any]:
    """Check one decoded event against contract v1 and return a normalised copy.

    The copy holds only contract fields, optional ones as ``None`` when absent, plus ``ts``
    (event time in epoch ms). Raises InvalidEvent with a stable reason code:
    ``not_an_object``, ``missing_field``, ``wrong_type``, ``too_long``, ``unknown_event_type``,
    ``bad_timestamp``, ``future_timestamp``, ``bad_schema_version``.

    A fast path accepts the common, valid event with few checks; anything unusual goes to
    the full check, which gives the reason, so both agree by construction.
    """
    if type(obj) is dict:
        get = obj.get
        event_id = get("event_id")
        event_type = get("event_type")
        occurred_at = get("occurred_at")
        actor_id = get("actor_id")
        version = get("schema_version", 1)
        if (
            (version == 1 and version is not True)
            and type(event_id) is str
            and 0 < len(event_id) <= 200
            and type(event_type) is str
            and event_type in EVENT_TYPES
            and type(occurred_at) is str
            and occurred_at
            and type(actor_id) is str
            and 0 < len(actor_id) <= 320
        ):
            out: dict[str, Any] = {
                "event_id": event_id,
                "event_type": event_type,
                "occurred_at": occurred_at,
                "actor_id": actor_id,
            }
            for name, limit in _OPTIONAL_LIMITS:
                value = get(name)
                if value is not None and (type(value) is not str or len(value) > limit):
                    return _validate_fully(obj, now_ms, future_tolerance_ms)
                out[name] = value
            try:
                ts = parse_time_ms(occurred_at)
            except InvalidEvent:
                ts = MIN_TS_MS - 1
            if ts < MIN_TS_MS or ts > now_ms + future_tolerance_ms:
                return _validate_fully(obj, now_ms, future_tolerance_ms)
            out["ts"] = ts
            return out
    return _validate_fully(obj, now_ms, future_tolerance_ms)


def _validate_fully(obj: object, now_ms: int, future_tolerance_ms: int) -> dict[str, Any]:
    """``validate_event``'s full check, rule by rule, in the order that gives the reason."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", 1)
    if version != 1 or isinstance(version, bool):
        raise InvalidEvent("bad_schema_version", f"schema_version must be 1, got {version!r}")
    out: dict[str, Any] = {}
    for field in _REQUIRED:
        value = obj.get(field)
        if value is None:
            raise InvalidEvent("missing_field", field)
        if not isinstance(value, str):
            raise InvalidEvent("wrong_type", f"{field} must be a string")
        if not value:
            raise InvalidEvent("missing_field", f"{field} is empty")
        if len(value) > _MAX_LEN.get(field, 10_000):
            raise InvalidEvent("too_long", field)
        out[field] = value
    for field in OPTIONAL_FIELDS:
        value = obj.get(field)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidEvent("wrong_type", f"{field} must be a string or null")
            if len(value) > _MAX_LEN[field]:
                raise InvalidEvent("too_long", field)
        out[field] = value
    if out["event_type"] not in EVENT_TYPES:
        raise InvalidEvent("unknown_event_type", out["event_type"][:60])
    ts = parse_time_ms(out["occurred_at"])
    if ts < MIN_TS_MS:
        raise InvalidEvent("bad_timestamp", "before 1970")
    if ts > now_ms + future_tolerance_ms:
        raise InvalidEvent("future_timestamp", f"{out['occurred_at']} is in the future")
    out["ts"] = ts
    return out


# --- envelopes of valid events, decoded and checked in one pass ------------------------------
def _text(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length)]


# msgspec decodes into TypedDicts built from the rules above (one source for both paths);
# built at run time, so the type checker sees them as Any
_typed_dict: Any = TypedDict
_EVENT_FIELDS: Final[dict[str, Any]] = {
    "schema_version": NotRequired[Literal[1]],
    "event_id": _text(_MAX_LEN["event_id"], 1),
    "event_type": Literal[tuple(sorted(EVENT_TYPES))],
    "occurred_at": _text(10_000, 1),
    "actor_id": _text(_MAX_LEN["actor_id"], 1),
    **{name: NotRequired[_text(limit) | None] for name, limit in _OPTIONAL_LIMITS},
}
_EVENT_SHAPE: Final = _typed_dict("EventShape", _EVENT_FIELDS)
_ENVELOPE_SHAPE: Final = _typed_dict(
    "EnvelopeShape",
    {
        "schema_version": NotRequired[Literal[1]],
        "events": list[_EVENT_SHAPE],  # type: ignore[valid-type]
        "end_of_input": NotRequired[bool],
        "pseudonymised": NotRequired[bool],
        "event_id": NotRequired[Any],  # present: a single event, not an envelope
    },
)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_ENVELOPE_SHAPE)


@dataclass(frozen=True, slots=True)
class ValidEnvelope:
    """An envelope whose every event is valid: the normalised events and its flags."""

    events: list[dict[str, Any]]
    end_of_input: bool
    pseudonymised: bool


def decode_valid_envelope(
    value: bytes, now_ms: int, future_tolerance_ms: int
) -> ValidEnvelope | None:
    """Decode and check an envelope in one pass (msgspec, in C); None unless it is an
    envelope of only valid events (then ``validate_event`` must judge it event by event).

    The fast path of the worker: the same rules as ``validate_event`` (the shape above is
    built from them) and the same events, at a fraction of the cost, except that optional
    fields an event does not carry are absent rather than ``None`` (read them with ``get``;
    absent fields also keep the activity envelopes small).
    """
    try:
        doc = _ENVELOPE_DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if "event_id" in doc:
        return None
    events = doc["events"]
    limit = now_ms + future_tolerance_ms
    for ev in events:
        ev.pop("schema_version", None)
        try:
            ts = parse_time_ms(ev["occurred_at"])
        except InvalidEvent:
            return None
        if ts < MIN_TS_MS or ts > limit:
            return None
        ev["ts"] = ts
    return ValidEnvelope(events, doc.get("end_of_input", False), doc.get("pseudonymised", False))
