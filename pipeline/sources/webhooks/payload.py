"""What the payload mappings share: source names, the mapped result (events or why none), the
JSON body and field readers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from pipeline.errors import InvalidEvent
from pipeline.sources.connectors.base import RawEvent

SLACK: Final = "slack"
MATTERMOST: Final = "mattermost"
EVENTS: Final = "events"  # the generic endpoint: contract events and envelopes
SOURCES: Final = (EVENTS, SLACK, MATTERMOST)
MAX_MENTIONS: Final = 50  # per message: bounds the events one request can fan out to
#: Why a valid payload yields no event (a closed set: a label of the ignored-counter).
IGNORE_REASONS: Final = (
    "bot",
    "edit",
    "deletion",
    "join_message",
    "subtype",
    "direct_message",
    "no_user",
    "event_type",
    "callback_type",
    "duplicate",
)


@dataclass
class Mapped:
    """Contract events of one payload (raw person ids), or why there are none."""

    events: list[RawEvent] = field(default_factory=list)
    ignored: str | None = None


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object; InvalidEvent ``not_json`` / ``not_an_object``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_an_object", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def req(doc: Mapping[str, Any], name: str) -> str:
    """The non-empty string field ``name`` of ``doc``; InvalidEvent ``bad_payload`` otherwise."""
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent("bad_payload", f"{name} must be a non-empty string")
    return value


def opt(doc: Mapping[str, Any], name: str) -> str | None:
    """The string field ``name`` of ``doc``, None when absent, null or empty."""
    return None if doc.get(name) in (None, "") else req(doc, name)
