"""Write contract events of the synthetic organisation as a Mattermost bulk export (JSONL).

``write_mattermost_export`` writes the lines in the order Mattermost documents ("Bulk loading
data format"): ``version``, ``team``, ``channel``, ``user``, then ``post`` lines with nested
``replies`` and ``reactions``. ``mattermost_expressible`` gives the events such an export can
express, in the form ``pipeline.sources.connectors.mattermost.read`` gives them back: the reader's
oracle. Both come from one plan:

* ``post_created`` -> a post (every 7th with ``edit_at``); posts of one channel in the same
  millisecond are moved apart by 1 ms (a post's identity is channel + ``create_at``)
* ``reply_created`` -> a reply nested in the thread's root post (threads are flat: a reply
  to a reply answers the root; parent = root = the post, target = the post's author)
* ``reaction_added`` -> a reaction (own ``create_at``) in the post or reply acted on, with an
  emoji the person has not used on it yet; dropped when the message is not in the export
* ``mention`` -> a new post ``@username …``: read back as ``post_created`` plus ``mention``
* ``member_joined`` / ``member_left`` -> a ``system_join_channel`` / ``system_leave_channel``
  post
* views, shares and idea events are dropped

Besides, every channel gets one bot post (``props.from_bot``, read back as a ``bot`` skip).
"""

from __future__ import annotations

import gzip
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from pipeline.sources.connectors.base import iso
from tests.connectors.common import free_tick, in_spaces, new_emoji, new_text

TEAM = "example"
BOT = "buildbot"


@dataclass
class _Post:
    channel: str
    ms: int
    user: str  # username
    message: str
    type: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    replies: list[_Post] = field(default_factory=list)
    reactions: list[tuple[str, str, int]] = field(default_factory=list)  # (user, emoji, ms)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MattermostPlan:
    """The export as objects (users, channels, posts) and the events it expresses."""

    users: dict[str, str] = field(default_factory=dict)  # person id -> username
    units: dict[str, str] = field(default_factory=dict)
    channels: list[str] = field(default_factory=list)
    posts: list[_Post] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    bot_posts: int = 0


def _ms(occurred_at: str) -> int:
    return round(datetime.fromisoformat(occurred_at.replace("Z", "+00:00")).timestamp() * 1000)


def _iso(ms: int) -> str:
    return iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))


def _username(pid: str) -> str:
    name = pid.split("@")[0].lower()
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


def plan_mattermost(events: list[dict[str, Any]], people: dict[str, str]) -> MattermostPlan:
    """Lay ``events`` out as Mattermost objects; ``people`` maps person id -> unit."""
    plan = MattermostPlan(units=dict(people))
    for pid in sorted(people):
        plan.users[pid] = _username(pid)

    def user(pid: str) -> str:
        return plan.users.setdefault(pid, _username(pid))

    def channel(space: str) -> str:
        if space not in plan.channels:
            plan.channels.append(space)
        return space

    used: dict[str, set[int]] = defaultdict(set)

    def new_ms(key: str, occurred_at: str) -> int:
        return free_tick(used[key], _ms(occurred_at))

    def text(kind: str) -> str:
        return new_text(plan.texts, kind)

    content: dict[str, tuple[_Post, _Post]] = {}  # content id -> (message, root post)
    for ev, kind, space in in_spaces(events):
        actor = user(ev["actor_id"])
        if kind == "post_created":
            ch = channel(space)
            post = _Post(ch, new_ms(ch, ev["occurred_at"]), actor, text("Beitrag"))
            if len(plan.posts) % 7 == 6:
                post.extra["edit_at"] = post.ms + 60_000
            plan.posts.append(post)
            content[ev["content_id"]] = (post, post)
        elif kind == "reply_created":
            found = content.get(ev["root_content_id"])
            if found is None:
                continue
            root = found[1]
            key = f"{root.channel}:{root.ms}"
            reply = _Post(root.channel, new_ms(key, ev["occurred_at"]), actor, text("Antwort"))
            root.replies.append(reply)
            content[ev["content_id"]] = (reply, root)
        elif kind == "reaction_added":
            found = content.get(ev["content_id"])
            if found is None:
                continue
            msg = found[0]
            emoji = new_emoji(ev["event_id"], {e for u, e, _ in msg.reactions if u == actor})
            if emoji is not None:
                msg.reactions.append((actor, emoji, _ms(ev["occurred_at"])))
        elif kind == "mention":
            ch = channel(space)
            body = f"@{user(ev['target_actor_id'])} {text('Hinweis')}"
            plan.texts[-1] = body
            plan.posts.append(_Post(ch, new_ms(ch, ev["occurred_at"]), actor, body))
        elif kind in ("member_joined", "member_left"):
            ch = channel(space)
            joined = kind == "member_joined"
            post = _Post(
                ch,
                new_ms(ch, ev["occurred_at"]),
                actor,
                f"{actor} {'joined' if joined else 'left'} the channel.",
                type="system_join_channel" if joined else "system_leave_channel",
            )
            plan.posts.append(post)
    for ch in plan.channels:
        first = min((p.ms for p in plan.posts if p.channel == ch), default=1767571200000)
        ms = free_tick(used[ch], first + 1)
        plan.posts.append(_Post(ch, ms, BOT, text("Build"), props={"from_bot": "true"}))
        plan.bot_posts += 1
    plan.posts.sort(key=lambda p: p.ms)
    plan.expected = _expected(plan)
    return plan


def _expected(plan: MattermostPlan) -> list[dict[str, Any]]:
    person = {name: pid for pid, name in plan.users.items()}
    out: list[dict[str, Any]] = []

    def add(kind: str, ms: int, actor: str, space: str, **fields: Any) -> None:
        out.append(
            {
                "event_type": kind,
                "occurred_at": _iso(ms),
                "actor_id": actor,
                "platform": "mattermost",
                "space_id": space,
                **{k: v for k, v in fields.items() if v is not None},
            }
        )

    def mentions_and_reactions(m: _Post, cid: str, root: str, space: str) -> None:
        author = person[m.user]
        if m.message.startswith("@"):
            target = person[m.message[1 : m.message.index(" ")]]
            add(
                "mention",
                m.ms,
                author,
                space,
                target_actor_id=target,
                content_id=cid,
                root_content_id=root,
            )
        for reactor, _, ms in m.reactions:
            add(
                "reaction_added",
                ms,
                person[reactor],
                space,
                target_actor_id=author,
                content_id=cid,
                root_content_id=root,
            )

    for p in plan.posts:
        if p.user == BOT:
            continue
        space = f"{TEAM}/{p.channel}"
        cid = f"mattermost:{space}:{p.ms}"
        author = person[p.user]
        if p.type:
            kind = "member_joined" if p.type == "system_join_channel" else "member_left"
            add(kind, p.ms, author, space)
            continue
        add("post_created", p.ms, author, space, content_id=cid, root_content_id=cid)
        mentions_and_reactions(p, cid, cid, space)
        for r in p.replies:
            rid = f"{cid}:{r.ms}"
            add(
                "reply_created",
                r.ms,
                person[r.user],
                space,
                target_actor_id=author,
                content_id=rid,
                parent_content_id=cid,
                root_content_id=cid,
            )
            mentions_and_reactions(r, rid, cid, space)
    return out


def mattermost_expressible(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a Mattermost bulk export of ``events`` expresses, as the reader gives them
    back (without ``event_id``; person ids as in ``events``, the reader's default e-mail key)."""
    people = {e["actor_id"]: "" for e in events}
    return plan_mattermost(events, people).expected


def _post_json(p: _Post, reply: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {} if reply else {"team": TEAM, "channel": p.channel}
    doc.update({"user": p.user, "type": p.type or None, "message": p.message})
    if not reply:
        doc["props"] = p.props or None
    doc["create_at"] = p.ms
    doc.update(p.extra)
    if p.reactions:
        doc["reactions"] = [
            {"user": u, "emoji_name": e, "create_at": ms} for u, e, ms in p.reactions
        ]
    if p.replies:
        doc["replies"] = [_post_json(r, reply=True) for r in p.replies]
    return {k: v for k, v in doc.items() if v is not None}


def write_mattermost_export(
    events: list[dict[str, Any]], people: dict[str, str], path: Path
) -> Path:
    """Write ``events`` as a bulk export at ``path`` (``.jsonl``; gzip for ``.gz``; the ZIP of
    ``mmctl export`` for ``.zip``); ``people`` maps person id -> unit (written as the
    ``position``, which the reader does not use). Returns ``path``."""
    return write_plan(plan_mattermost(events, people), path)


def write_plan(plan: MattermostPlan, path: Path) -> Path:
    """Write a planned export (see ``plan_mattermost``) at ``path``."""
    lines: list[dict[str, Any]] = [
        {"type": "version", "version": 1},
        {
            "type": "team",
            "team": {"name": TEAM, "display_name": "Example GmbH", "type": "O"},
        },
    ]
    for ch in plan.channels:
        lines.append(
            {
                "type": "channel",
                "channel": {"team": TEAM, "name": ch, "display_name": ch.title(), "type": "O"},
            }
        )
    channels = [{"name": ch, "roles": "channel_user"} for ch in plan.channels]
    for pid, name in sorted(plan.users.items(), key=lambda x: x[1]):
        lines.append(
            {
                "type": "user",
                "user": {
                    "username": name,
                    "email": pid,
                    "auth_service": "",
                    "nickname": "",
                    "first_name": "Person",
                    "last_name": name,
                    "position": plan.units.get(pid, ""),
                    "roles": "system_user",
                    "locale": "de",
                    "teams": [{"name": TEAM, "roles": "team_user", "channels": channels}],
                },
            }
        )
    lines.append({"type": "user", "user": {"username": BOT, "email": "buildbot@ci.example.org"}})
    for p in plan.posts:
        lines.append({"type": "post", "post": _post_json(p)})
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("import.jsonl", data)
    else:
        path.write_bytes(data)
    return path
