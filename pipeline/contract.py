"""Fast validation of contract v1 events (schemas/event.v1.json) into normalised records.

The JSON Schema is the contract for producers; this module is the hot-path implementation of
the same rules (a test checks both agree on randomised input). Checking by hand costs a fraction
of a general validator and yields the parsed event time at the same time.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Final

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
#: Event types that are contributions (Nielsen's "contributors"); views and joins are not.
CONTRIBUTION_TYPES: Final = frozenset(
    {"post_created", "reply_created", "idea_submitted", "idea_commented", "share"}
)
#: An interaction is a tie between two people (DESIGN.md, cross-silo).
INTERACTION_TYPES: Final = frozenset({"reply_created", "reaction_added", "mention", "share"})

_TIME_RE: Final = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-]00:00)$"
)
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


def parse_time_ms(value: str) -> int:
    """Parse an RFC 3339 UTC timestamp into epoch milliseconds; InvalidEvent when malformed."""
    if not _TIME_RE.fullmatch(value):  # not match: "$" also matches before a final \n
        raise InvalidEvent(
            "bad_timestamp", "occurred_at must be RFC 3339 UTC, e.g. 2026-11-24T09:15:02Z"
        )
    try:
        head = value[:19]
        frac = ""
        rest = value[19:]
        if rest.startswith("."):
            end = 1
            while end < len(rest) and rest[end].isdigit():
                end += 1
            frac = rest[1:end]
        dt = datetime.fromisoformat(head + "+00:00")
    except ValueError as exc:
        raise InvalidEvent("bad_timestamp", str(exc)) from None
    return int(dt.timestamp()) * 1000 + (int(frac[:3].ljust(3, "0")) if frac else 0)


def validate_event(obj: object, now_ms: int, future_tolerance_ms: int) -> dict[str, Any]:
    """Check one decoded event against contract v1 and return a normalised copy.

    The copy holds only contract fields, optional ones as ``None`` when absent, plus ``ts``
    (event time in epoch ms). Raises InvalidEvent with a stable reason code:
    ``not_an_object``, ``missing_field``, ``wrong_type``, ``too_long``, ``unknown_event_type``,
    ``bad_timestamp``, ``future_timestamp``, ``bad_schema_version``.
    """
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
