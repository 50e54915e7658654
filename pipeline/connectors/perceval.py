"""Perceval items (``perceval BACKEND ... --json-line``, or its default indented output) as
events, for the backends slack, mattermost, discourse and mbox.

Each item is ``{"backend_name", "category", "origin", "uuid", "updated_on", "data", ...}``;
``data`` is what the backend fetched (perceval/backends/core/*.py). Mapping per backend:

* **mbox** (category ``message``; ``data`` = the headers as strings plus ``body``): through
  ``pipeline.connectors.mbox.MailThreads``, so the events equal the mbox reader's.
* **slack** (``message``: a ``conversations.history`` message plus ``user_data`` and
  ``channel_info``): the rules and ids of ``pipeline.connectors.slack`` (same workspace, same
  events): a message -> ``post_created`` (``slack:<channel id>:<ts>``); ``thread_ts`` != ``ts``
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
  ``system`` (other types), ``deleted`` (``delete_at``), as ``pipeline.connectors.mattermost``.
  Direct and group channels are the one space ``direct``; others the channel ``name``.
* **discourse** (``topic``: ``/t/{id}.json`` with all ``post_stream.posts``): post 1 ->
  ``post_created``, every other post -> ``reply_created`` (parent = the post
  ``reply_to_post_number``, else post 1; target = its author, or ``reply_to_user``);
  ``<a class="mention" href="/u/NAME">`` in ``cooked`` -> ``mention``; ``post_type`` 2/3
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

from pipeline.connectors.base import (
    ImportContext,
    ImportFormatError,
    RawEvent,
    event,
    iso,
    source_files,
)
from pipeline.connectors.mbox import MailThreads
from pipeline.connectors.mentions import at_mentions, slack_mentions
from pipeline.connectors.slack import parse_ts

_PROGRESS_BYTES: Final = 1 << 20
_MAX_ID: Final = 200
_DIRECT: Final = "direct"  # one space for all direct / group messages, as the export readers
_DISCOURSE_MENTION: Final = re.compile(
    r"<a\b[^>]*\bclass=\"mention\"[^>]*\bhref=\"/u(?:sers)?/([^\"/?#]+)\"|"
    r"<a\b[^>]*\bhref=\"/u(?:sers)?/([^\"/?#]+)\"[^>]*\bclass=\"mention\""
)
# Slack message subtypes, as pipeline.connectors.slack reads them
_SLACK_POSTS: Final = frozenset({"", "file_share", "me_message", "thread_broadcast"})
_SLACK_JOIN: Final = frozenset({"channel_join", "group_join"})
_SLACK_LEAVE: Final = frozenset({"channel_leave", "group_leave"})
_SLACK_DELETED: Final = frozenset({"tombstone", "message_deleted"})
_SLACK_EDITED: Final = frozenset({"message_changed"})
_SLACK_BOT_SUBTYPES: Final = frozenset({"bot_message", "bot_add", "bot_remove"})
_SLACKBOT: Final = "USLACKBOT"
# Mattermost post types -> (membership event, prop naming the member; None: the poster)
_MM_MEMBERSHIP: Final[dict[str, tuple[str, str | None]]] = {
    "system_join_channel": ("member_joined", None),
    "system_leave_channel": ("member_left", None),
    "system_add_to_channel": ("member_joined", "addedUsername"),
    "system_remove_from_channel": ("member_left", "removedUsername"),
}
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
            reported = 0
            for item, pos in _items(f):
                if pos - reported >= _PROGRESS_BYTES:
                    ctx.progress((pos - reported) // 2)
                    reported = pos
                if learning:
                    if item is not None:
                        index.learn(item)
                elif item is None:
                    ctx.stats.skip("unparseable")
                else:
                    yield from _item_events(item, index, mail, ctx)
            ctx.progress((f.stat().st_size - reported) // 2)


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
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be opened ({exc.strerror})") from None
    with fh:
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


def _iso_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _site(origin: object) -> str:
    return hashlib.sha256(str(origin).encode()).hexdigest()[:8]


def _short_hash(value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _fit(value: str, platform: str) -> str:
    """An id within the contract's 200 characters (a hash of it when longer)."""
    if len(value) <= _MAX_ID:
        return value
    return f"{platform}:h:{hashlib.blake2b(value.encode(), digest_size=16).hexdigest()}"


@dataclass
class _Index:
    """What pass 1 learns from the whole file (authors' profiles, thread roots)."""

    slack_keys: dict[str, str] = field(default_factory=dict)  # user id -> e-mail
    slack_bots: set[str] = field(default_factory=lambda: {_SLACKBOT})
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
    when = parse_ts(ts)
    if when is None or not isinstance(ts, str) or not isinstance(subtype, str):
        skip("unparseable")
        return
    channel = _slack_channel(item)
    info = _dict(data.get("channel_info"))
    name = info.get("name")
    direct = info.get("is_im") is True or info.get("is_mpim") is True
    space = _DIRECT if direct else (name if isinstance(name, str) and name else channel)[:_MAX_ID]
    thread = data.get("thread_ts")
    thread = thread if parse_ts(thread) is not None else None
    uid = data.get("user") if isinstance(data.get("user"), str) and data.get("user") else None
    cid = _fit(f"slack:{channel}:{ts}", "slack")
    is_reply = thread is not None and thread != ts
    root = _fit(f"slack:{channel}:{thread}", "slack") if is_reply else cid
    if subtype in _SLACK_DELETED:
        skip("deleted")
        return
    if subtype in _SLACK_EDITED:
        skip("edited")
        return
    if subtype in _SLACK_BOT_SUBTYPES or data.get("bot_id") or uid in index.slack_bots:
        skip("bot")
        yield from _slack_reactions(data, index, ctx, when, cid, root, space, None)
        return
    if uid is None:
        skip("unparseable")
        return
    actor, at = index.slack_key(uid), iso(when)
    if subtype in _SLACK_JOIN or subtype in _SLACK_LEAVE:
        kind = "member_joined" if subtype in _SLACK_JOIN else "member_left"
        yield event(cid, kind, at, actor, platform="slack", space_id=space)
        return
    if subtype not in _SLACK_POSTS:
        skip("system")
        return
    if is_reply:
        assert thread is not None
        parent_user = data.get("parent_user_id")
        if isinstance(parent_user, str) and parent_user:
            target = None if parent_user in index.slack_bots else index.slack_key(parent_user)
        else:
            author = index.slack_roots.get((channel, thread))
            target = index.slack_key(author) if author else None
        yield event(
            cid,
            "reply_created",
            at,
            actor,
            platform="slack",
            space_id=space,
            target_actor_id=target,
            content_id=cid,
            parent_content_id=root,
            root_content_id=root,
        )
    else:
        yield event(
            cid,
            "post_created",
            at,
            actor,
            platform="slack",
            space_id=space,
            content_id=cid,
            root_content_id=cid,
        )
    k = 0
    for mentioned in slack_mentions(data.get("text")):
        if mentioned in index.slack_bots:
            continue
        yield event(
            _fit(f"{cid}:mention:{k}", "slack"),
            "mention",
            at,
            actor,
            platform="slack",
            space_id=space,
            target_actor_id=index.slack_key(mentioned),
            content_id=cid,
            root_content_id=root,
        )
        k += 1
    yield from _slack_reactions(data, index, ctx, when, cid, root, space, actor)


def _slack_reactions(
    data: dict[str, Any],
    index: _Index,
    ctx: ImportContext,
    when: datetime,
    cid: str,
    root: str,
    space: str,
    author: str | None,
) -> Iterator[RawEvent]:
    """``reactions[].users`` at the message's time (Slack gives none for reactions)."""
    reactions = data.get("reactions")
    if not reactions:
        return
    skip = ctx.stats.skip
    if not isinstance(reactions, list):
        skip("unparseable")
        return
    at = iso(when)
    for reaction in reactions:
        name = _dict(reaction).get("name")
        people = _dict(reaction).get("users")
        if not isinstance(name, str) or not isinstance(people, list):
            skip("unparseable")
            continue
        count = reaction.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count > len(people):
            skip("reaction_users_unknown", count - len(people))  # Slack lists only some
        emoji = _short_hash(name)
        for i, uid in enumerate(people):
            if not isinstance(uid, str) or not uid:
                skip("unparseable")
                continue
            if uid in index.slack_bots:
                skip("bot")
                continue
            yield event(
                _fit(f"{cid}:reaction:{emoji}:{i}", "slack"),
                "reaction_added",
                at,
                index.slack_key(uid),
                platform="slack",
                space_id=space,
                target_actor_id=author,
                content_id=cid,
                root_content_id=root,
            )


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
    delete_at = data.get("delete_at")
    if isinstance(delete_at, int) and not isinstance(delete_at, bool) and delete_at > 0:
        skip("deleted")
        return
    channel = _dict(data.get("channel_data"))
    if channel.get("type") in ("D", "G"):
        space: str | None = _DIRECT
    else:
        name = channel.get("name") or data.get("channel_id")
        space = name[:_MAX_ID] if isinstance(name, str) and name else None
    cid = _fit(f"mattermost:{pid}", "mattermost")
    at = iso(when)
    if post_type:
        if post_type not in _MM_MEMBERSHIP:
            skip("system")
            return
        kind, prop = _MM_MEMBERSHIP[post_type]
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
            yield event(cid, kind, at, who, platform="mattermost", space_id=space)
        return
    root_id = data.get("root_id") or ""
    root = _fit(f"mattermost:{root_id}", "mattermost") if root_id else cid
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
            yield event(
                cid,
                "reply_created",
                at,
                author,
                platform="mattermost",
                space_id=space,
                target_actor_id=index.mm_keys.get(parent_author) if parent_author else None,
                content_id=cid,
                parent_content_id=_fit(f"mattermost:{parent_id}", "mattermost"),
                root_content_id=root,
            )
        else:
            yield event(
                cid,
                "post_created",
                at,
                author,
                platform="mattermost",
                space_id=space,
                content_id=cid,
                root_content_id=cid,
            )
        k = 0
        for name in at_mentions(data.get("message"), index.mm_names):
            if name in index.mm_bots:
                continue
            yield event(
                _fit(f"{cid}:mention:{k}", "mattermost"),
                "mention",
                at,
                author,
                platform="mattermost",
                space_id=space,
                target_actor_id=index.mm_names[name],
                content_id=cid,
                root_content_id=root,
            )
            k += 1
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
        h = _short_hash(emoji)
        yield event(
            _fit(f"{cid}:reaction:{h}:{user}", "mattermost"),
            "reaction_added",
            iso(rwhen),
            index.mm_keys.get(user, user),
            platform="mattermost",
            space_id=space,
            target_actor_id=author,
            content_id=cid,
            root_content_id=root,
        )


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
        name, ts = post.get("username"), _iso_time(post.get("created_at"))
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
        actor, at, cid = person(name), iso(ts), cid_of(post)
        if number == 1 or first is None:
            yield event(
                cid,
                "post_created",
                at,
                actor,
                platform="discourse",
                space_id=space,
                content_id=cid,
                root_content_id=root or cid,
            )
        else:
            replied = post.get("reply_to_post_number")
            parent = by_number.get(replied) if isinstance(replied, int) else first
            if parent is not None:
                parent_name, parent_cid = parent.get("username"), cid_of(parent)
            else:  # answered post not in the item: its author is still named
                to = _dict(post.get("reply_to_user"))
                parent_name, parent_cid = to.get("username"), None
            yield event(
                cid,
                "reply_created",
                at,
                actor,
                platform="discourse",
                space_id=space,
                target_actor_id=person(parent_name) if isinstance(parent_name, str) else None,
                content_id=cid,
                parent_content_id=parent_cid,
                root_content_id=root,
            )
        cooked = _str(post.get("cooked"))
        names = (a or b for a, b in _DISCOURSE_MENTION.findall(cooked))
        for mentioned in dict.fromkeys(n.lower() for n in names):
            if mentioned == name.lower():
                continue
            yield event(
                f"{cid}:mention:{mentioned}",
                "mention",
                at,
                actor,
                platform="discourse",
                space_id=space,
                target_actor_id=person(mentioned),
                content_id=cid,
                root_content_id=root or cid,
            )
