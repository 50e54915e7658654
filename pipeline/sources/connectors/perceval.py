"""Perceval items (``perceval BACKEND ... --json-line``, or its default indented output) as
events, for the backends slack, mattermost, discourse and mbox.

Each item is ``{"backend_name", "category", "origin", "uuid", "updated_on", "data", ...}``;
``data`` is what the backend fetched (perceval/backends/core/*.py). Mapping per backend:

* **mbox** (category ``message``; ``data`` = the headers as strings plus ``body``): through
  ``pipeline.sources.connectors.mbox.MailThreads``, so the events equal the mbox reader's.
* **slack** (``message``: a ``conversations.history`` message plus ``user_data`` and
  ``channel_info``): the rules and ids of ``pipeline.sources.connectors.slack`` (same
  workspace, same events): a message -> ``post_created`` (``slack:<channel id>:<ts>``);
  ``thread_ts`` != ``ts``
  (a reply broadcast to the channel) -> ``reply_created`` towards ``parent_user_id`` or the
  thread root's author; ``reactions[].users`` -> ``reaction_added`` at the message's time (Slack
  gives none); ``<@U..>`` -> ``mention``; ``channel_join``/``channel_leave`` -> membership;
  skips ``bot``, ``deleted``, ``edited``, ``system``, ``reaction_users_unknown`` as there. The
  backend fetches no thread replies that were not broadcast: they are missing.
* **mattermost** (``post``: an API v4 post plus ``user_data`` and ``channel_data``): a post ->
  ``post_created`` (``mattermost:<post id>``); with ``root_id`` -> ``reply_created`` (parent =
  ``parent_id`` or ``root_id``, target = the root's author); ``metadata.reactions`` ->
  ``reaction_added`` at their ``create_at``; ``@username`` of a user who posted in the file ->
  ``mention``; ``system_join/leave_channel``, ``system_add_to/remove_from_channel`` ->
  membership; skips ``bot`` (``user_data.is_bot``, ``props.from_bot/from_webhook/from_plugin``),
  ``system`` (other types), ``deleted`` (``delete_at``), as
  ``pipeline.sources.connectors.mattermost``.
  Direct and group channels are the one space ``direct``; others the channel ``name``.
* **discourse** (``topic``: ``/t/{id}.json`` with all ``post_stream.posts``): post 1 ->
  ``post_created``, every other post -> ``reply_created`` (parent = the post
  ``reply_to_post_number``, else post 1; target = its author, or ``reply_to_user``);
  ``<a class="mention" href="/u/NAME">`` in ``cooked`` -> ``mention`` (also of the author, as
  the other readers record self-mentions); ``post_type`` 2/3
  (moderator action, small action), the system users -> ``system``; ``deleted_at`` ->
  ``deleted``. Space ``discourse-category-<id>`` (private messages: none). Likes are only
  counts in ``actions_summary``, without who liked: lost.

Person key: slack: the profile e-mail (lower-cased) from any item's ``user_data``, else the
Slack user id; mattermost: ``user_data.email``, else the username (a reacting user who wrote
nothing in the file: the user id); discourse shows no addresses: ``discourse:<site>:<username>``
(site = 8 hex of sha256(origin)). Skips per item also: ``unparseable`` (a bad line, no time or
user), ``unknown_backend`` (e.g. git, github), ``unsupported_category``.

Two passes over the file: pass 1 learns user id -> e-mail/username, bots and thread roots ->
author (~150 bytes per root message), pass 2 yields. Message text is only searched for
mentions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from pipeline.sources.connectors import mattermost, slack
from pipeline.sources.connectors.base import (
    MAX_ID,
    ImportContext,
    ImportFormatError,
    Message,
    Progress,
    RawEvent,
    fit_id,
    iso,
    open_source,
    parse_iso,
    short_hash,
    source_files,
)
from pipeline.sources.connectors.mbox import MailThreads
from pipeline.sources.connectors.mentions import at_mentions, slack_mentions

_DIRECT: Final = "direct"  # one space for all direct / group messages, as the export readers
_DISCOURSE_MENTION: Final = re.compile(
    r"<a\b[^>]*\bclass=\"mention\"[^>]*\bhref=\"/u(?:sers)?/([^\"/?#]+)\"|"
    r"<a\b[^>]*\bhref=\"/u(?:sers)?/([^\"/?#]+)\"[^>]*\bclass=\"mention\""
)
#: Discourse's own accounts (system, discobot) have ids <= 0.
_DISCOURSE_SYSTEM_NAMES: Final = frozenset({"system", "discobot"})


def read(source: Path, ctx: ImportContext) -> Iterator[RawEvent]:
    """Events of a file of Perceval items (or of every file below a directory, sorted)."""
    path = source_files(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    index = _Index()
    mail = MailThreads()
    for learning in (True, False):  # pass 1 learns, pass 2 yields; each reports half the bytes
        for f in files:
            progress = Progress(ctx.progress, passes=2)
            for item, pos in _items(f):
                progress.at(pos)
                if learning:
                    if item is not None:
                        index.learn(item)
                elif item is None:
                    ctx.stats.skip("unparseable")
                else:
                    yield from _item_events(item, index, mail, ctx)
            progress.end(f.stat().st_size)


# --------------------------------------------------------------------------------------------
# reading items


def _items(path: Path) -> Iterator[tuple[dict[str, Any] | None, int]]:
    """(item or None when unreadable, bytes read so far) per item of a Perceval output file.

    ``--json-line`` output has one object per line; the default output is indented JSON
    objects whose opening and closing braces stand alone at the start of a line.
    """
    pos = 0
    seen_item = False
    pretty: list[bytes] | None = None
    with open_source(path) as fh:
        for line in fh:
            pos += len(line)
            if pretty is not None:
                pretty.append(line)
                if line.rstrip(b"\r\n") == b"}":
                    item = _decode(b"".join(pretty))
                    pretty = None
                    seen_item = seen_item or item is not None
                    yield item, pos
                continue
            stripped = line.strip()
            if not stripped:
                continue
            if stripped == b"{":
                pretty = [line]
                continue
            item = _decode(stripped)
            seen_item = seen_item or item is not None
            if not seen_item and pos > (1 << 20):
                raise ImportFormatError(f"{path}: no Perceval item in the first MiB")
            yield item, pos
        if pretty is not None:
            yield None, pos  # an indented item cut off at the end
    if pos and not seen_item:
        raise ImportFormatError(
            f"{path}: no Perceval item (JSON object with backend_name and data) found"
        )


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("backend_name"), str)
        or not isinstance(obj.get("data"), dict)
    ):
        return None
    return obj


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _email(value: object) -> str | None:
    if isinstance(value, str) and "@" in value:
        return value.strip().lower()
    return None


def _ms_time(ms: object) -> datetime | None:
    if isinstance(ms, bool) or not isinstance(ms, int | float) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC)


def _site(origin: object) -> str:
    return hashlib.sha256(str(origin).encode()).hexdigest()[:8]


@dataclass
class _Index:
    """What pass 1 learns from the whole file (authors' profiles, thread roots)."""

    slack_keys: dict[str, str] = field(default_factory=dict)  # user id -> e-mail
    slack_bots: set[str] = field(default_factory=lambda: {slack.SLACKBOT})
    slack_roots: dict[tuple[str, str], str | None] = field(default_factory=dict)  # -> author
    mm_keys: dict[str, str] = field(default_factory=dict)  # user id -> e-mail or username
    mm_names: dict[str, str] = field(default_factory=dict)  # username -> person key
    mm_bots: set[str] = field(default_factory=set)  # user ids and usernames of bots
    mm_roots: dict[str, str | None] = field(default_factory=dict)  # root post id -> author id

    def learn(self, item: dict[str, Any]) -> None:
        backend = item["backend_name"].lower()
        data = item["data"]
        user = _dict(data.get("user_data"))
        if backend == "slack":
            uid = data.get("user")
            if not isinstance(uid, str) or not uid:
                return
            if user.get("is_bot") is True:
                self.slack_bots.add(uid)
            mail = _email(_dict(user.get("profile")).get("email"))
            if mail:
                self.slack_keys[uid] = mail
            ts, thread = data.get("ts"), data.get("thread_ts")
            if isinstance(ts, str) and (thread == ts or "reply_count" in data):
                bot = bool(data.get("bot_id")) or uid in self.slack_bots
                self.slack_roots[(_slack_channel(item), ts)] = None if bot else uid
        elif backend == "mattermost":
            uid = data.get("user_id")
            if not isinstance(uid, str) or not uid:
                return
            name = _str(user.get("username")).lower()
            key = _email(user.get("email")) or name
            if key:
                self.mm_keys[uid] = key
            if name and key:
                self.mm_names[name] = key
            if user.get("is_bot") is True:
                self.mm_bots.update(x for x in (uid, name) if x)
            pid = data.get("id")
            if isinstance(pid, str) and not data.get("root_id"):
                self.mm_roots[pid] = uid

    def slack_key(self, uid: str) -> str:
        """E-mail when an item carried the user's profile, else the Slack user id."""
        return self.slack_keys.get(uid, uid)


def _slack_channel(item: dict[str, Any]) -> str:
    info = _dict(item["data"].get("channel_info"))
    if isinstance(info.get("id"), str):
        return str(info["id"])
    return str(item.get("origin", "")).rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------
# mapping


def _item_events(
    item: dict[str, Any], index: _Index, mail: MailThreads, ctx: ImportContext
) -> Iterable[RawEvent]:
    backend = item["backend_name"].lower()
    category = item.get("category")
    expected = {"slack": "message", "mattermost": "post", "discourse": "topic", "mbox": "message"}
    if backend not in expected:
        ctx.stats.skip("unknown_backend")
        return []
    if category is not None and category != expected[backend]:
        ctx.stats.skip("unsupported_category")
        return []
    if backend == "mbox":
        headers = {
            k.lower(): v for k, v in item["data"].items() if isinstance(v, str) and k != "body"
        }
        return mail.events(headers, ctx)
    if backend == "slack":
        return _slack(item, index, ctx)
    if backend == "mattermost":
        return _mattermost(item, index, ctx)
    return _discourse(item, ctx)


def _slack(item: dict[str, Any], index: _Index, ctx: ImportContext) -> Iterator[RawEvent]:
    """One message of ``conversations.history`` with ``user_data`` and ``channel_info``."""
    data, skip = item["data"], ctx.stats.skip
    ts, subtype = data.get("ts"), data.get("subtype") or ""
    when = slack.parse_ts(ts)
    if when is None or not isinstance(ts, str) or not isinstance(subtype, str):
        skip("unparseable")
        return
    channel = _slack_channel(item)
    info = _dict(data.get("channel_info"))
    name = info.get("name")
    direct = info.get("is_im") is True or info.get("is_mpim") is True
    space = _DIRECT if direct else (name if isinstance(name, str) and name else channel)[:MAX_ID]
    thread = data.get("thread_ts")
    replied: str | None = None  # the thread's root when the message is a reply in a thread
    if isinstance(thread, str) and thread != ts and slack.parse_ts(thread) is not None:
        replied = thread
    uid = data.get("user") if isinstance(data.get("user"), str) and data.get("user") else None
    cid = slack.content_id(channel, ts)
    root = slack.content_id(channel, replied) if replied is not None else cid
    message = Message(slack.PLATFORM, cid, root, iso(when), space)
    bots, key = index.slack_bots, index.slack_key
    if subtype in slack.DELETED_SUBTYPES:
        skip("deleted")
        return
    if subtype in slack.EDITED_SUBTYPES:
        skip("edited")
        return
    if subtype in slack.BOT_SUBTYPES or data.get("bot_id") or uid in bots:
        skip("bot")
        yield from slack.reactions(data, message, None, key, bots, ctx.stats)
        return
    if uid is None:
        skip("unparseable")
        return
    actor = key(uid)
    kind = slack.membership(subtype)
    if kind is not None:
        yield message.membership(kind, actor)
        return
    if subtype not in slack.POST_SUBTYPES:
        skip("system")
        return
    if replied is not None:
        parent_user = data.get("parent_user_id")
        if isinstance(parent_user, str) and parent_user:
            target = None if parent_user in bots else key(parent_user)
        else:
            author = index.slack_roots.get((channel, replied))
            target = key(author) if author else None
        yield message.reply(actor, parent_content_id=root, target_actor_id=target)
    else:
        yield message.post(actor)
    mentioned = slack_mentions(data.get("text"))
    yield from message.numbered_mentions(actor, (key(m) for m in mentioned if m not in bots))
    yield from slack.reactions(data, message, actor, key, bots, ctx.stats)


def _mm_bot(data: dict[str, Any], index: _Index) -> bool:
    props = _dict(data.get("props"))
    if any(
        str(props.get(k)).lower() == "true" for k in ("from_bot", "from_webhook", "from_plugin")
    ):
        return True
    return (
        _dict(data.get("user_data")).get("is_bot") is True or data.get("user_id") in index.mm_bots
    )


def _mattermost(item: dict[str, Any], index: _Index, ctx: ImportContext) -> Iterator[RawEvent]:
    """One post of ``/channels/{id}/posts`` with ``user_data`` and ``channel_data``."""
    data, skip = item["data"], ctx.stats.skip
    pid, uid, when = data.get("id"), data.get("user_id"), _ms_time(data.get("create_at"))
    post_type = data.get("type") or ""
    if not isinstance(pid, str) or not pid or when is None or not isinstance(post_type, str):
        skip("unparseable")
        return
    if mattermost.deleted(data):
        skip("deleted")
        return
    channel = _dict(data.get("channel_data"))
    if channel.get("type") in ("D", "G"):
        space: str | None = _DIRECT
    else:
        name = channel.get("name") or data.get("channel_id")
        space = name[:MAX_ID] if isinstance(name, str) and name else None
    cid = _mm_id(pid)
    root_id = data.get("root_id") or ""
    root = _mm_id(root_id) if root_id else cid
    message = Message(mattermost.PLATFORM, cid, root, iso(when), space)
    if post_type:
        if post_type not in mattermost.MEMBERSHIP_TYPES:
            skip("system")
            return
        kind, prop = mattermost.MEMBERSHIP_TYPES[post_type]
        if prop is None:
            who = index.mm_keys.get(uid) if isinstance(uid, str) else None
            bot = _mm_bot(data, index)
        else:
            name = _str(_dict(data.get("props")).get(prop)).lower()
            who = index.mm_names.get(name) or name or None
            bot = name in index.mm_bots
        if who is None:
            skip("unparseable")
        elif bot:
            skip("bot")
        else:
            yield message.membership(kind, who)
        return
    author: str | None = None
    if _mm_bot(data, index):
        skip("bot")
    else:
        author = index.mm_keys.get(uid) if isinstance(uid, str) else None
        if author is None:
            skip("unparseable")
            return
        if root_id:
            parent_id = data.get("parent_id") or root_id
            parent_author = index.mm_roots.get(parent_id) if isinstance(parent_id, str) else None
            yield message.reply(
                author,
                parent_content_id=_mm_id(parent_id),
                target_actor_id=index.mm_keys.get(parent_author) if parent_author else None,
            )
        else:
            yield message.post(author)
        names = at_mentions(data.get("message"), index.mm_names)
        targets = (index.mm_names[n] for n in names if n not in index.mm_bots)
        yield from message.numbered_mentions(author, targets)
    reactions = _dict(data.get("metadata")).get("reactions") or []
    if not isinstance(reactions, list):
        skip("unparseable")
        return
    for r in reactions:
        emoji, rwhen, user = _dict(r).get("emoji_name"), _ms_time(_dict(r).get("create_at")), None
        user = _dict(r).get("user_id")
        if not isinstance(emoji, str) or rwhen is None or not isinstance(user, str):
            skip("unparseable")
            continue
        if user in index.mm_bots:
            skip("bot")
            continue
        event_id = fit_id(f"{cid}:reaction:{short_hash(emoji)}:{user}", mattermost.PLATFORM)
        yield message.reaction(event_id, index.mm_keys.get(user, user), author, iso(rwhen))


def _mm_id(post_id: str) -> str:
    """The content id of a post: ``mattermost:<post id>``."""
    return fit_id(f"{mattermost.PLATFORM}:{post_id}", mattermost.PLATFORM)


def _discourse(item: dict[str, Any], ctx: ImportContext) -> Iterator[RawEvent]:
    data, stats = item["data"], ctx.stats
    stream = data.get("post_stream")
    posts = stream.get("posts") if isinstance(stream, dict) else None
    if not isinstance(posts, list):
        stats.skip("unparseable")
        return
    site = _site(item.get("origin"))
    category = data.get("category_id")
    private = data.get("archetype") == "private_message"
    space = None if private or category is None else f"discourse-category-{category}"
    by_number: dict[int, dict[str, Any]] = {
        p["post_number"]: p
        for p in posts
        if isinstance(p, dict) and isinstance(p.get("post_number"), int)
    }
    first = by_number.get(1)

    def person(username: str) -> str:
        return f"discourse:{site}:{username.lower()}"

    def cid_of(post: dict[str, Any]) -> str:
        return f"discourse:{site}:{post.get('id')}"

    root = cid_of(first) if first is not None else None
    for post in posts:
        if not isinstance(post, dict):
            stats.skip("unparseable")
            continue
        name, ts = post.get("username"), parse_iso(post.get("created_at"))
        number = post.get("post_number")
        if not isinstance(name, str) or not name or ts is None or not isinstance(number, int):
            stats.skip("unparseable")
            continue
        if post.get("deleted_at"):
            stats.skip("deleted")
            continue
        user_id = post.get("user_id")
        if (
            post.get("post_type") in (2, 3)
            or (isinstance(user_id, int) and user_id <= 0)
            or name.lower() in _DISCOURSE_SYSTEM_NAMES
        ):
            stats.skip("system")
            continue
        actor, cid = person(name), cid_of(post)
        message = Message("discourse", cid, root or cid, iso(ts), space)
        if number == 1 or first is None:
            yield message.post(actor)
        else:
            replied = post.get("reply_to_post_number")
            parent = by_number.get(replied) if isinstance(replied, int) else first
            if parent is not None:
                parent_name, parent_cid = parent.get("username"), cid_of(parent)
            else:  # answered post not in the item: its author is still named
                to = _dict(post.get("reply_to_user"))
                parent_name, parent_cid = to.get("username"), None
            yield message.reply(
                actor,
                parent_content_id=parent_cid,
                target_actor_id=person(parent_name) if isinstance(parent_name, str) else None,
            )
        names = (a or b for a, b in _DISCOURSE_MENTION.findall(_str(post.get("cooked"))))
        for mentioned in dict.fromkeys(n.lower() for n in names):
            yield message.mention(f"{cid}:mention:{mentioned}", actor, person(mentioned))
