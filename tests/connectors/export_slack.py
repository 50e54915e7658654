"""Write contract events of the synthetic organisation as a Slack workspace export.

``write_slack_export`` lays the events out as Slack documents its export ("How to read Slack
data exports"): ``users.json``, ``channels.json`` and one folder per channel with a
``YYYY-MM-DD.json`` array of messages per day. ``slack_expressible`` gives the events such an
export can express, in the form ``pipeline.sources.connectors.slack.read`` gives them back: the
reader's oracle. Both come from one plan, so they always describe the same export:

* ``post_created`` -> a message (every 5th a ``file_share``, every 7th ``edited``)
* ``reply_created`` -> a thread reply (``thread_ts`` of the root; every 2nd with
  ``parent_user_id``); Slack threads are flat, so a reply to a reply answers the thread root:
  parent = root = the root message, target = the root's author
* ``reaction_added`` -> the reactor in the ``reactions`` of the message acted on, under an emoji
  the person has not used on it yet; read back at the message's time (the export has no
  reaction time); a reaction whose message is not in the export is dropped
* ``mention`` -> a new message ``<@U…> …``: read back as ``post_created`` plus ``mention``
* ``member_joined`` / ``member_left`` -> ``channel_join`` / ``channel_leave``
* views, shares and idea events are dropped (no such thing in the export)

Besides, every channel gets one bot message (``bot_message``, read back as a ``bot`` skip).
All message texts are collected in ``SlackPlan.texts`` for the privacy test.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.sources.connectors.base import iso
from tests.connectors.common import free_tick, in_spaces, new_emoji, new_text

TEAM = "T0TEILHAB"
BOT_USER = "U0BOT0001"
BOT_ID = "B0BOT0001"


@dataclass
class _Message:
    channel: str  # channel id
    ts: str
    user: str  # Slack user id
    text: str
    subtype: str | None = None
    thread_ts: str | None = None
    parent_user: str | None = None  # written as parent_user_id when set
    reactions: dict[str, list[str]] = field(default_factory=dict)  # emoji -> user ids
    replies: list[_Message] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SlackPlan:
    """The export as objects (users, channels, messages) and the events it expresses."""

    users: dict[str, str] = field(default_factory=dict)  # person id -> Slack user id
    units: dict[str, str] = field(default_factory=dict)  # person id -> unit
    channels: dict[str, str] = field(default_factory=dict)  # space -> channel id
    messages: list[_Message] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    bot_messages: int = 0


def _ts(occurred_at: str) -> int:
    """Microseconds since the epoch of an RFC 3339 UTC time."""
    dt = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    return round(dt.timestamp() * 1_000_000)


def _ts_str(micros: int) -> str:
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _when(ts: str) -> str:
    sec, micro = ts.split(".")
    return iso(datetime.fromtimestamp(int(sec), UTC).replace(microsecond=int(micro)))


def plan_slack(events: list[dict[str, Any]], people: dict[str, str]) -> SlackPlan:
    """Lay ``events`` out as Slack objects; ``people`` maps person id -> unit (all members)."""
    plan = SlackPlan(units=dict(people))
    for i, pid in enumerate(sorted(people)):
        plan.users[pid] = f"U{i + 1:08X}"

    def user(pid: str) -> str:
        if pid not in plan.users:
            plan.users[pid] = f"U{len(plan.users) + 1:08X}"
        return plan.users[pid]

    def channel(space: str) -> str:
        if space not in plan.channels:
            plan.channels[space] = f"C{len(plan.channels) + 1:08X}"
        return plan.channels[space]

    used: dict[str, set[int]] = defaultdict(set)

    def new_ts(ch: str, occurred_at: str) -> str:
        return _ts_str(free_tick(used[ch], _ts(occurred_at)))

    def text(kind: str) -> str:
        return new_text(plan.texts, kind)

    content: dict[str, _Message] = {}  # generator content id -> message
    for ev, kind, space in in_spaces(events):
        actor = user(ev["actor_id"])
        if kind == "post_created":
            ch = channel(space)
            msg = _Message(ch, new_ts(ch, ev["occurred_at"]), actor, text("Beitrag"))
            n_post = len(content) + 1
            if n_post % 5 == 0:
                msg.subtype = "file_share"
                msg.extra["files"] = [{"id": f"F{n_post:08X}", "name": "plan.pdf"}]
                msg.extra["upload"] = True
            if n_post % 7 == 0:
                msg.extra["edited"] = {"user": actor, "ts": _ts_str(_ts(ev["occurred_at"]) + 60)}
            plan.messages.append(msg)
            content[ev["content_id"]] = msg
        elif kind == "reply_created":
            root = content.get(ev["root_content_id"])
            if root is None or root.thread_ts not in (None, root.ts):
                continue
            ch = root.channel
            msg = _Message(ch, new_ts(ch, ev["occurred_at"]), actor, text("Antwort"))
            msg.thread_ts = root.thread_ts = root.ts
            if len(root.replies) % 2 == 0:
                msg.parent_user = root.user
            root.replies.append(msg)
            plan.messages.append(msg)
            content[ev["content_id"]] = msg
        elif kind == "reaction_added":
            target = content.get(ev["content_id"])
            if target is None:
                continue
            mine = {e for e, users in target.reactions.items() if actor in users}
            emoji = new_emoji(ev["event_id"], mine)
            if emoji is not None:
                target.reactions.setdefault(emoji, []).append(actor)
        elif kind == "mention":
            ch = channel(space)
            mentioned = user(ev["target_actor_id"])
            body = text("Hinweis")
            msg = _Message(ch, new_ts(ch, ev["occurred_at"]), actor, f"<@{mentioned}> {body}")
            plan.texts[-1] = msg.text
            plan.messages.append(msg)
        elif kind in ("member_joined", "member_left"):
            ch = channel(space)
            sub = "channel_join" if kind == "member_joined" else "channel_leave"
            verb = "has joined" if kind == "member_joined" else "has left"
            msg = _Message(ch, new_ts(ch, ev["occurred_at"]), actor, f"<@{actor}> {verb}")
            msg.subtype = sub
            plan.messages.append(msg)
    for ch in plan.channels.values():  # one integration message per channel
        first = min((m.ts for m in plan.messages if m.channel == ch), default="1767571200.000000")
        ts = _ts_str(free_tick(used[ch], _ts(_when(first)) + 1))
        msg = _Message(ch, ts, BOT_USER, text("Build"), subtype="bot_message")
        msg.extra["bot_id"] = BOT_ID
        plan.messages.append(msg)
        plan.bot_messages += 1
    plan.expected = _expected(plan)
    return plan


def _expected(plan: SlackPlan) -> list[dict[str, Any]]:
    person = {uid: pid for pid, uid in plan.users.items()}
    space_of = {ch: space for space, ch in plan.channels.items()}
    roots = {(m.channel, m.ts): m for m in plan.messages if m.replies}
    out: list[dict[str, Any]] = []

    def add(kind: str, m: _Message, actor: str, **fields: Any) -> None:
        out.append(
            {
                "event_type": kind,
                "occurred_at": _when(m.ts),
                "actor_id": actor,
                "platform": "slack",
                "space_id": space_of[m.channel],
                **{k: v for k, v in fields.items() if v is not None},
            }
        )

    for m in plan.messages:
        if m.subtype == "bot_message":
            continue
        actor = person[m.user]
        if m.subtype in ("channel_join", "channel_leave"):
            add("member_joined" if m.subtype == "channel_join" else "member_left", m, actor)
            continue
        cid = f"slack:{m.channel}:{m.ts}"
        if m.thread_ts is not None and m.thread_ts != m.ts:
            root_cid = f"slack:{m.channel}:{m.thread_ts}"
            root = roots[(m.channel, m.thread_ts)]
            add(
                "reply_created",
                m,
                actor,
                target_actor_id=person[root.user],
                content_id=cid,
                parent_content_id=root_cid,
                root_content_id=root_cid,
            )
        else:
            root_cid = cid
            add("post_created", m, actor, content_id=cid, root_content_id=cid)
        if m.text.startswith("<@"):
            target = person[m.text[2 : m.text.index(">")]]
            add(
                "mention",
                m,
                actor,
                target_actor_id=target,
                content_id=cid,
                root_content_id=root_cid,
            )
        for reactors in m.reactions.values():
            for uid in reactors:
                add(
                    "reaction_added",
                    m,
                    person[uid],
                    target_actor_id=actor,
                    content_id=cid,
                    root_content_id=root_cid,
                )
    return out


def slack_expressible(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a Slack export of ``events`` expresses, as the reader gives them back
    (without ``event_id``; person ids as in ``events``, the reader's default e-mail key)."""
    people = {e["actor_id"]: "" for e in events}
    return plan_slack(events, people).expected


def _message_json(m: _Message) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "message"}
    if m.subtype:
        doc["subtype"] = m.subtype
    doc.update({"user": m.user, "text": m.text, "ts": m.ts, "team": TEAM})
    if m.subtype is None or m.subtype == "file_share":
        doc["client_msg_id"] = hashlib.md5(f"{m.channel}{m.ts}".encode()).hexdigest()
    if m.thread_ts is not None:
        doc["thread_ts"] = m.thread_ts
    if m.parent_user is not None:
        doc["parent_user_id"] = m.parent_user
    if m.replies:
        doc["reply_count"] = len(m.replies)
        doc["reply_users"] = sorted({r.user for r in m.replies})
        doc["reply_users_count"] = len(doc["reply_users"])
        doc["latest_reply"] = m.replies[-1].ts
        doc["replies"] = [{"user": r.user, "ts": r.ts} for r in m.replies]
    if m.reactions:
        doc["reactions"] = [
            {"name": name, "users": users, "count": len(users)}
            for name, users in m.reactions.items()
        ]
    doc.update(m.extra)
    return doc


def write_slack_export(events: list[dict[str, Any]], people: dict[str, str], path: Path) -> Path:
    """Write ``events`` as a Slack export at ``path`` (a ZIP when it ends in ``.zip``, else an
    unzipped directory); ``people`` maps person id -> unit (the unit becomes the job title,
    which the reader does not use). Returns ``path``."""
    return write_plan(plan_slack(events, people), path)


def write_plan(plan: SlackPlan, path: Path) -> Path:
    """Write a planned export (see ``plan_slack``) at ``path``."""
    files: dict[str, bytes] = {}
    users = [
        {
            "id": uid,
            "team_id": TEAM,
            "name": pid.split("@")[0],
            "deleted": False,
            "real_name": f"Person {pid.split('@')[0]}",
            "tz": "Europe/Berlin",
            "profile": {
                "title": plan.units.get(pid, ""),
                "real_name": f"Person {pid.split('@')[0]}",
                "display_name": pid.split("@")[0],
                "email": pid,
                "team": TEAM,
            },
            "is_admin": False,
            "is_bot": False,
            "is_app_user": False,
        }
        for pid, uid in plan.users.items()
    ]
    users.append(
        {
            "id": BOT_USER,
            "team_id": TEAM,
            "name": "buildbot",
            "deleted": False,
            "profile": {"bot_id": BOT_ID, "real_name": "Build"},
            "is_bot": True,
        }
    )
    files["users.json"] = orjson.dumps(users, option=orjson.OPT_INDENT_2)
    members: dict[str, set[str]] = defaultdict(set)
    for m in plan.messages:
        if m.user != BOT_USER:
            members[m.channel].add(m.user)
    channels = [
        {
            "id": ch,
            "name": space,
            "created": 1767571200,
            "creator": min(members[ch], default=BOT_USER),
            "is_archived": False,
            "is_general": space == "all-company",
            "members": sorted(members[ch]),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": f"Kanal {space}", "creator": "", "last_set": 0},
        }
        for space, ch in plan.channels.items()
    ]
    files["channels.json"] = orjson.dumps(channels, option=orjson.OPT_INDENT_2)
    name_of = {ch: space for space, ch in plan.channels.items()}
    days: dict[str, list[_Message]] = defaultdict(list)
    for m in plan.messages:
        day = datetime.fromtimestamp(int(m.ts.split(".")[0]), UTC).date().isoformat()
        days[f"{name_of[m.channel]}/{day}.json"].append(m)
    for name, msgs in days.items():
        msgs.sort(key=lambda m: m.ts)
        files[name] = orjson.dumps([_message_json(m) for m in msgs], option=orjson.OPT_INDENT_2)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files):
                zf.writestr(name, files[name])
    else:
        for name, data in files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return path
