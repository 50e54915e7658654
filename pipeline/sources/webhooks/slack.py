"""Slack Events API ``event_callback`` payloads as contract v1 events: posts and replies,
their mentions, reactions, channel joins."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pipeline.errors import InvalidEvent
from pipeline.sources.connectors import mentions
from pipeline.sources.connectors.base import Message, event, iso
from pipeline.sources.webhooks.payload import MAX_MENTIONS, SLACK, Mapped, opt, req

_SLACK_TS: Final = re.compile(r"([0-9]{1,12})(?:\.([0-9]{1,6}))?")
#: Message subtypes that are a person's post or reply; every other one is left out.
_COUNTED_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_SUBTYPE_REASONS: Final = {
    "bot_message": "bot",
    "message_changed": "edit",
    "message_deleted": "deletion",
    "message_replied": "edit",
    "channel_join": "join_message",
    "channel_leave": "join_message",
}


def slack_time(ts: str) -> str:
    """A Slack ``ts`` (``1732450000.000200``: seconds.microseconds) as RFC 3339 UTC."""
    m = _SLACK_TS.fullmatch(ts)
    if m is None:
        raise InvalidEvent("bad_timestamp", "a Slack ts is seconds.microseconds")
    micros = int((m[2] or "0").ljust(6, "0"))
    try:
        return iso(datetime.fromtimestamp(int(m[1]), UTC) + timedelta(microseconds=micros))
    except (ValueError, OverflowError, OSError):  # beyond the year 9999
        raise InvalidEvent("bad_timestamp", "a Slack ts beyond what a date can hold") from None


def slack_mentions(text: object) -> list[str]:
    """User ids mentioned as ``<@U…>`` in a Slack text, in order, once each (at most
    ``MAX_MENTIONS``; the parsing is the export reader's,
    ``pipeline.sources.connectors.mentions``)."""
    return mentions.slack_mentions(text)[:MAX_MENTIONS]


def map_slack_callback(doc: Mapping[str, Any]) -> Mapped:
    """Contract events of one Slack ``event_callback`` (InvalidEvent when malformed)."""
    ev = doc.get("event")
    if not isinstance(ev, dict):
        raise InvalidEvent("bad_payload", "event_callback without an event object")
    kind = ev.get("type")
    if kind == "message":
        return _slack_message(ev)
    if kind == "reaction_added":
        return _slack_reaction(ev, req(doc, "event_id"))
    if kind == "member_joined_channel":
        return _slack_joined(ev, req(doc, "event_id"))
    if not isinstance(kind, str):
        raise InvalidEvent("bad_payload", "event.type must be a string")
    return Mapped(ignored="event_type")


def _slack_message(ev: Mapping[str, Any]) -> Mapped:
    subtype = ev.get("subtype")
    if subtype not in _COUNTED_SUBTYPES:
        return Mapped(ignored=_SUBTYPE_REASONS.get(str(subtype), "subtype"))
    if ev.get("bot_id") or ev.get("bot_profile"):
        return Mapped(ignored="bot")
    if ev.get("channel_type") in ("im", "mpim"):
        return Mapped(ignored="direct_message")
    user = ev.get("user")
    if not isinstance(user, str) or not user:
        return Mapped(ignored="no_user")
    channel, ts = req(ev, "channel"), req(ev, "ts")
    when = slack_time(ts)
    thread = opt(ev, "thread_ts")
    # ids as the export reader's (pipeline.sources.connectors.slack): an import counts them once
    cid = f"slack:{channel}:{ts}"
    is_reply = thread is not None and thread != ts
    root = f"slack:{channel}:{thread}" if is_reply else cid
    msg = Message(SLACK, cid, root, when, channel)
    first = (
        msg.reply(user, parent_content_id=root, target_actor_id=opt(ev, "parent_user_id"))
        if is_reply
        else msg.post(user)
    )
    return Mapped([first, *msg.numbered_mentions(user, slack_mentions(ev.get("text")))])


def _slack_reaction(ev: Mapping[str, Any], event_id: str) -> Mapped:
    user = req(ev, "user")
    when = slack_time(req(ev, "event_ts"))
    item = ev.get("item")
    if not isinstance(item, dict):
        raise InvalidEvent("bad_payload", "reaction_added without an item object")
    if item.get("type") == "message":
        space: str | None = req(item, "channel")
        content = f"slack:{space}:{req(item, 'ts')}"
    else:  # a file or file comment: no channel
        space, content = None, f"slack:{opt(item, 'file_comment') or req(item, 'file')}"
    return Mapped(
        [
            event(
                f"slack:{event_id}",  # Slack's id of the delivery: stable over retries
                "reaction_added",
                when,
                user,
                platform=SLACK,
                space_id=space,
                target_actor_id=opt(ev, "item_user"),
                content_id=content,
            )
        ]
    )


def _slack_joined(ev: Mapping[str, Any], event_id: str) -> Mapped:
    user, channel, ts = req(ev, "user"), req(ev, "channel"), req(ev, "event_ts")
    joined = event(
        f"slack:{event_id}",
        "member_joined",
        slack_time(ts),
        user,
        platform=SLACK,
        space_id=channel,
    )
    return Mapped([joined])
