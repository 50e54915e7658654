"""Mattermost outgoing-webhook payloads (JSON or form-encoded) as contract v1 events: the post
and its @mentions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from pipeline.errors import InvalidEvent
from pipeline.sources.connectors import mentions
from pipeline.sources.connectors.base import Message, iso
from pipeline.sources.webhooks.payload import (
    MATTERMOST,
    MAX_MENTIONS,
    Mapped,
    parse_json_object,
    req,
)


def mattermost_mentions(text: object) -> list[str]:
    """Usernames (lower-case) mentioned as ``@name`` in a Mattermost text, in order, once
    each; not ``@all``, ``@channel``, ``@here``, nor the ``@`` of an e-mail address."""
    return mentions.at_mentions(text, None)[:MAX_MENTIONS]


def parse_mattermost(body: bytes, content_type: str) -> dict[str, Any]:
    """A Mattermost outgoing webhook body (JSON or form-encoded) as a dict of fields."""
    if content_type == "application/json":
        return parse_json_object(body)
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidEvent("invalid_utf8", "form body is not UTF-8") from None
    return {k: v[0] for k, v in form.items()}


def map_mattermost(doc: Mapping[str, Any]) -> Mapped:
    """A post of a Mattermost outgoing webhook and its @mentions as contract events."""
    user = req(doc, "user_name").lower()
    post, channel = req(doc, "post_id"), req(doc, "channel_id")
    stamp = doc.get("timestamp")
    if isinstance(stamp, str) and stamp.isdigit():
        stamp = int(stamp)
    if not isinstance(stamp, int) or isinstance(stamp, bool) or not 0 <= stamp < 10**14:
        raise InvalidEvent("bad_timestamp", "timestamp must be epoch milliseconds")
    try:
        when = iso(
            datetime.fromtimestamp(stamp // 1000, UTC) + timedelta(milliseconds=stamp % 1000)
        )
    except (ValueError, OverflowError, OSError):
        raise InvalidEvent("bad_timestamp", "timestamp beyond what a date can hold") from None
    msg = Message(MATTERMOST, f"mattermost:{post}", f"mattermost:{post}", when, channel)
    mentioned = mattermost_mentions(doc.get("text"))
    return Mapped([msg.post(user), *msg.numbered_mentions(user, mentioned)])
