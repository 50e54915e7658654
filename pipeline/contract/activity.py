"""Records of the internal activity topic: written by the ingest agent, read by the engagement
agent. ``{"src": <input partition>, "events": [<enriched event>, ...]}``, or an end-of-input
marker ``{"src": N, "events": [], "end": true}``.

The topic is internal, but a record on it may still be wrong (written by hand, by another
version, or damaged), and one that the engagement agent cannot apply must not stop it: its
worker would read the same record after every restart and stop again. So the agent decodes
each record against this shape (msgspec, in C, at the cost of a plain JSON decode) and sets
aside whatever does not fit, as a dead letter.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired, TypedDict

import msgspec

from pipeline.contract.events import OPTIONAL_FIELDS

_typed_dict: Any = TypedDict  # built at run time from the contract's fields
_EVENT = _typed_dict(
    "ActivityEvent",
    {
        "event_id": str,
        "event_type": str,
        "ts": int,
        "actor_id": str,
        "actor_unit": str,
        **{name: NotRequired[str | None] for name in OPTIONAL_FIELDS if name != "actor_unit"},
    },
)
_RECORD = _typed_dict(
    "ActivityRecord",
    {
        "src": Annotated[int, msgspec.Meta(ge=0)],
        "events": list[_EVENT],  # type: ignore[valid-type]
        "end": NotRequired[bool],
    },
)
_DECODER = msgspec.json.Decoder(_RECORD)


class BadActivityRecordError(ValueError):
    """An activity record that does not have the shape above (the reason in its message)."""


def decode_activity(value: bytes | None) -> dict[str, Any]:
    """The record as a dict (``src``, ``events``, optionally ``end``); BadActivityRecordError
    when it is not one."""
    if not value:
        raise BadActivityRecordError("empty record")
    try:
        record: dict[str, Any] = _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadActivityRecordError(str(exc)[:300]) from None
    return record
