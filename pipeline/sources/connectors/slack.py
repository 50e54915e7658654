"""Slack workspace export (ZIP or unzipped directory) as contract v1 events.

Format (Slack, "How to read Slack data exports"): ``users.json``, ``channels.json`` (public),
optionally ``groups.json`` (private), ``mpims.json`` (group DMs), ``dms.json`` (DMs), and one
folder per conversation (channel name; DM id) with one ``YYYY-MM-DD.json`` per day, an array
of message objects. A ZIP whose files sit under one top folder is read the same.

Mapping (message ``m`` in channel ``c``; ``cid(ts) = "slack:<channel id>:<ts>"``):

* top-level message (also ``file_share``, ``me_message``) -> ``post_created``, content ``cid``
* thread reply (``thread_ts`` != ``ts``, also ``thread_broadcast``) -> ``reply_created`` with
  parent = root = ``cid(thread_ts)``, target = the thread root's author (``parent_user_id``
  of the reply, else remembered from the root; none when the root is unknown, deleted or a bot)
* ``reactions[].users[]`` -> one ``reaction_added`` per user and emoji towards the message's
  author, at the message's time (the export has no reaction time)
* ``<@U…>`` in ``text`` -> one ``mention`` per distinct mentioned person (bots left out), with
  the message as content
* ``channel_join``/``group_join`` -> ``member_joined``; ``channel_leave``/``group_leave`` ->
  ``member_left`` (space = the channel)
* skipped, by reason: ``bot`` (``bot_message``, ``bot_id``, a user with ``is_bot``, Slackbot;
  per message and per bot reaction), ``deleted`` (``tombstone``, ``message_deleted``),
  ``edited`` (``message_changed`` records; an edited message itself counts once), ``system``
  (other subtypes: topic, purpose, rename, pins, huddles, ...), ``unparseable`` (a day file
  that is not a JSON array or cannot be read, an entry that is not an object, no ``ts`` or
  ``user``), ``too_large`` (a day file over ``MAX_DAY_FILE_BYTES``),
  ``reaction_users_unknown`` (Slack lists fewer ``users`` than ``count``; the difference).

Person key: the profile's e-mail (lower-cased) when the export has it, so that events join an
HR directory keyed by e-mail; otherwise, or with ``person_key="id"``, the Slack user id. The
standard export has no department, so ``ctx.people`` stays empty (``profile.title`` is a job
title, not a unit). Spaces: the channel name; every DM and group DM is the one space
``direct`` (their names are made of user names). Events come channel by channel, each channel
in time order; ids (event, content) hold no person id.

Memory: the metadata files, the user map and one day file at a time; for threads, per channel,
a map ``thread_ts -> author`` of thread roots only (messages with ``thread_ts == ts`` or a
``reply_count``), bounded to ``THREAD_ROOTS_PER_CHANNEL`` entries (least recently used
dropped; a reply to a dropped root has no target unless it carries ``parent_user_id``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Final

import orjson

from pipeline.sources.connectors.base import (
    DAMAGED,
    MAX_ID,
    MAX_PERSON,
    ExportFiles,
    ImportContext,
    ImportFormatError,
    ImportStats,
    Message,
    RawEvent,
    check_person_key,
    email_key,
    fit_id,
    iso,
    short_hash,
    source_files,
)
from pipeline.sources.connectors.mentions import slack_mentions

PLATFORM: Final = "slack"
DIRECT_SPACE: Final = "direct"
#: Thread roots remembered per channel (for the target of replies in later day files).
THREAD_ROOTS_PER_CHANNEL: Final = 200_000
#: A day file larger than this (uncompressed) is skipped as ``too_large``.
MAX_DAY_FILE_BYTES: Final = 256 * 1024 * 1024
_MAX_META_BYTES: Final = 512 * 1024 * 1024

_DAY_FILE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_TS: Final = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
_DM_FOLDER: Final = re.compile(r"^D[A-Z0-9]{2,}$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# message subtypes (the Perceval reader maps Slack items by the same sets)
POST_SUBTYPES: Final = frozenset({"", "file_share", "me_message", "thread_broadcast"})
JOIN_SUBTYPES: Final = frozenset({"channel_join", "group_join"})
LEAVE_SUBTYPES: Final = frozenset({"channel_leave", "group_leave"})
DELETED_SUBTYPES: Final = frozenset({"tombstone", "message_deleted"})
EDITED_SUBTYPES: Final = frozenset({"message_changed"})
BOT_SUBTYPES: Final = frozenset({"bot_message", "bot_add", "bot_remove"})
SLACKBOT: Final = "USLACKBOT"
# conversation metadata files, and whether their conversations are direct messages
_CONVERSATION_FILES: Final = (
    ("channels.json", False),
    ("groups.json", False),
    ("mpims.json", True),
    ("dms.json", True),
)
_META_FILES: Final = ("users.json", *(name for name, _ in _CONVERSATION_FILES))
_EXPECTED: Final = "a Slack workspace export (ZIP) or its unzipped directory"
# what reading a damaged (truncated, bad CRC, encrypted, odd compression) member raises
_BROKEN: Final = (*DAMAGED, ValueError)


def read(source: Path, ctx: ImportContext, *, person_key: str = "email") -> Iterator[RawEvent]:
    """Events of the Slack export at ``source`` (a ZIP file or an unzipped directory).

    The archive and its metadata (users, channels) are read before this returns, so an
    unreadable export raises ``ImportFormatError`` here; the messages are read as the result
    is iterated. ``person_key`` is ``"email"`` (default, falls back to the user id) or ``"id"``.
    """
    check_person_key(person_key)
    archive = _open_archive(source_files(source))
    try:
        users = _load_users(archive, ctx, person_key)
        channels = _load_channels(archive, ctx)
    except BaseException:
        archive.close()
        raise
    return _events(archive, users, channels, ctx)


# --------------------------------------------------------------------------------------------
# the archive: a ZIP or a directory, files by relative posix name


class _Archive:
    """The files of an export by name relative to its top, the folder of ``users.json``: in a
    ZIP the shallowest one; of a directory, the directory itself or its one subfolder with
    ``users.json``."""

    def __init__(self, source: Path) -> None:
        self.label = str(source)
        top = source
        if source.is_dir() and not (source / "users.json").is_file():
            subs = [p for p in source.iterdir() if (p / "users.json").is_file()]
            top = subs[0] if len(subs) == 1 else source
        self.files = ExportFiles(top, _EXPECTED)
        self.prefix = "" if source.is_dir() else _top_folder(self.files.names)
        n = len(self.prefix)
        self.names = [name[n:] for name in self.files.names if name.startswith(self.prefix)]

    def read(self, name: str, limit: int) -> bytes | None:
        """The file's bytes; None when larger than ``limit``; ``_BROKEN`` errors if damaged."""
        return self.files.read(self.prefix + name, limit)

    def size(self, name: str) -> int:
        """Bytes of the file in the source (compressed size in a ZIP), for progress."""
        try:
            return self.files.sizes(self.prefix + name)[0]
        except OSError:
            return 0

    def close(self) -> None:
        self.files.close()


def _top_folder(names: list[str]) -> str:
    """``""`` or ``"<folder>/"``: where the shallowest ``users.json`` of a ZIP is."""
    tops = sorted(
        (n for n in names if PurePosixPath(n).name == "users.json"),
        key=lambda n: (n.count("/"), n),
    )
    return tops[0][: -len("users.json")] if tops else ""


def _open_archive(source: Path) -> _Archive:
    archive = _Archive(source)
    missing = [n for n in ("users.json", "channels.json") if n not in archive.names]
    if missing:
        archive.close()
        raise ImportFormatError(
            f"{source}: not a Slack workspace export, {' and '.join(missing)} missing"
        )
    return archive


def _load_json(archive: _Archive, name: str) -> Any:
    """A metadata file (users.json, ...) as JSON; ImportFormatError when it cannot be read."""
    try:
        data = archive.read(name, _MAX_META_BYTES)
        if data is None:
            raise ImportFormatError(f"{archive.label}: {name} is larger than the metadata limit")
        return orjson.loads(data)
    except (orjson.JSONDecodeError, *_BROKEN):
        raise ImportFormatError(f"{archive.label}: {name} is not readable JSON") from None


# --------------------------------------------------------------------------------------------
# metadata: users and conversations


@dataclass
class _Users:
    keys: dict[str, str] = field(default_factory=dict)  # Slack user id -> person key
    bots: set[str] = field(default_factory=lambda: {SLACKBOT})

    def key(self, user_id: str) -> str | None:
        """The person key of a Slack user id (the id itself when not in users.json)."""
        key = self.keys.get(user_id, user_id)
        return key if 0 < len(key) <= MAX_PERSON else None


def _load_users(archive: _Archive, ctx: ImportContext, person_key: str) -> _Users:
    doc = _load_json(archive, "users.json")
    if not isinstance(doc, list):
        raise ImportFormatError(f"{archive.label}: users.json is not a JSON array")
    users = _Users()
    for u in doc:
        uid = u.get("id") if isinstance(u, dict) else None
        if not isinstance(uid, str) or not uid:
            ctx.stats.skip("unparseable")
            continue
        if u.get("is_bot") is True or uid == SLACKBOT:
            users.bots.add(uid)
        profile = u.get("profile")
        email = email_key(profile.get("email")) if isinstance(profile, dict) else None
        if person_key == "email" and email:
            users.keys[uid] = email
    return users


@dataclass(frozen=True)
class _Channel:
    channel_id: str
    space_id: str


def _load_channels(archive: _Archive, ctx: ImportContext) -> dict[str, _Channel]:
    """Folder name -> channel, from channels/groups (by name) and mpims/dms (direct)."""
    names = set(archive.names)
    folders: dict[str, _Channel] = {}
    for meta, direct in _CONVERSATION_FILES:
        if meta not in names:
            continue
        doc = _load_json(archive, meta)
        if not isinstance(doc, list):
            raise ImportFormatError(f"{archive.label}: {meta} is not a JSON array")
        for ch in doc:
            cid = ch.get("id") if isinstance(ch, dict) else None
            name = ch.get("name") if isinstance(ch, dict) else None
            if not isinstance(cid, str) or not cid:
                ctx.stats.skip("unparseable")
                continue
            folder = cid if meta == "dms.json" or not isinstance(name, str) else name
            space = DIRECT_SPACE if direct else folder
            folders[folder] = _Channel(cid, space[:MAX_ID])
    return folders


# --------------------------------------------------------------------------------------------
# messages


def _events(
    archive: _Archive, users: _Users, channels: dict[str, _Channel], ctx: ImportContext
) -> Iterator[RawEvent]:
    try:
        names = archive.names
        ctx.progress(sum(archive.size(n) for n in _META_FILES if n in names))
        days: dict[str, list[str]] = {}
        for name in names:
            parts = name.split("/")
            if len(parts) == 2 and _DAY_FILE.match(parts[1]):
                days.setdefault(parts[0], []).append(name)
        for folder in sorted(days):
            channel = channels.get(folder) or _unknown_channel(folder)
            reader = _ChannelReader(channel, users, ctx)
            for name in sorted(days[folder]):
                messages = _day_file(archive, name, ctx)
                ctx.progress(archive.size(name))
                for msg in messages:
                    yield from reader.message(msg)
    finally:
        archive.close()


def _unknown_channel(folder: str) -> _Channel:
    """A folder not listed in the metadata: a DM/group DM by its shape, else a channel."""
    direct = bool(_DM_FOLDER.match(folder)) or folder.startswith("mpdm-")
    return _Channel(folder[:80], DIRECT_SPACE if direct else folder[:MAX_ID])


def _day_file(archive: _Archive, name: str, ctx: ImportContext) -> list[Any]:
    """The messages of one day file; [] (counted) when it cannot be read as a JSON array."""
    try:
        data = archive.read(name, MAX_DAY_FILE_BYTES)
    except _BROKEN:
        ctx.stats.skip("unparseable")
        return []
    if data is None:
        ctx.stats.skip("too_large")
        return []
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, list):
        ctx.stats.skip("unparseable")
        return []
    return doc


def parse_ts(ts: object) -> datetime | None:
    """A Slack ``ts`` ("seconds.micro") as an exact UTC datetime; None when malformed."""
    if not isinstance(ts, str):
        return None
    m = _TS.match(ts)
    if m is None:
        return None
    micro = int((m.group(2) or "0").ljust(6, "0"))
    try:
        return _EPOCH + timedelta(seconds=int(m.group(1)), microseconds=micro)
    except OverflowError:
        return None


def content_id(channel_id: str, ts: str) -> str:
    """The content id of the message ``ts`` of a conversation: ``slack:<channel id>:<ts>``."""
    return fit_id(f"{PLATFORM}:{channel_id}:{ts}", PLATFORM)


def membership(subtype: str) -> str | None:
    """``member_joined`` / ``member_left`` for a join / leave subtype, else None."""
    if subtype in JOIN_SUBTYPES:
        return "member_joined"
    return "member_left" if subtype in LEAVE_SUBTYPES else None


def reactions(
    msg: dict[str, Any],
    message: Message,
    author: str | None,
    person: Callable[[str], str | None],
    bots: Container[str],
    stats: ImportStats,
) -> Iterator[RawEvent]:
    """``reactions[].users[]`` of a message: one ``reaction_added`` per person and emoji
    towards the message's ``author``, at the message's time (the export has no reaction time).
    Counted as skips: a bot's reaction, a malformed entry or user (also one ``person`` gives
    no key for), and the people Slack left out of ``users`` (``count`` is larger)."""
    listed = msg.get("reactions")
    if not listed:
        return
    skip = stats.skip
    if not isinstance(listed, list):
        skip("unparseable")
        return
    for reaction in listed:
        name = reaction.get("name") if isinstance(reaction, dict) else None
        people = reaction.get("users") if isinstance(reaction, dict) else None
        if not isinstance(name, str) or not isinstance(people, list):
            skip("unparseable")
            continue
        count = reaction.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and count > len(people):
            skip("reaction_users_unknown", count - len(people))  # Slack lists only some
        emoji = short_hash(name)
        for i, uid in enumerate(people):
            if not isinstance(uid, str) or not uid:
                skip("unparseable")
                continue
            if uid in bots:
                skip("bot")
                continue
            actor = person(uid)
            if actor is None:
                skip("unparseable")
                continue
            event_id = fit_id(f"{message.content_id}:reaction:{emoji}:{i}", PLATFORM)
            yield message.reaction(event_id, actor, author)


class _ChannelReader:
    """Turns the messages of one conversation (in time order) into events."""

    def __init__(self, channel: _Channel, users: _Users, ctx: ImportContext) -> None:
        self.ch = channel
        self.users = users
        self.ctx = ctx
        # thread_ts -> author key of the root (None: deleted, a bot, unknown)
        self.roots: OrderedDict[str, str | None] = OrderedDict()

    def _remember_root(self, ts: str, author: str | None) -> None:
        self.roots[ts] = author
        self.roots.move_to_end(ts)
        if len(self.roots) > THREAD_ROOTS_PER_CHANNEL:
            self.roots.popitem(last=False)

    def _root_author(self, msg: dict[str, Any], thread_ts: str) -> str | None:
        parent = msg.get("parent_user_id")
        if isinstance(parent, str) and parent:
            return None if parent in self.users.bots else self.users.key(parent)
        author = self.roots.get(thread_ts)
        if author is not None:
            self.roots.move_to_end(thread_ts)
        return author

    def message(self, msg: object) -> Iterator[RawEvent]:
        """Events of one message object (none, and a counted skip, when it is left out)."""
        skip = self.ctx.stats.skip
        if not isinstance(msg, dict):
            skip("unparseable")
            return
        ts = msg.get("ts")
        when = parse_ts(ts)
        if when is None or not isinstance(ts, str):
            skip("unparseable")
            return
        subtype = msg.get("subtype") or ""
        if not isinstance(subtype, str):
            skip("unparseable")
            return
        thread_ts = msg.get("thread_ts")
        if not isinstance(thread_ts, str) or parse_ts(thread_ts) is None:
            thread_ts = None
        is_root = thread_ts == ts or "reply_count" in msg
        is_reply = thread_ts is not None and thread_ts != ts
        user = msg.get("user")
        uid = user if isinstance(user, str) and user else None
        users = self.users
        bot = (
            subtype in BOT_SUBTYPES
            or bool(msg.get("bot_id"))
            or (uid is not None and uid in users.bots)
        )
        channel_id = self.ch.channel_id
        cid = content_id(channel_id, ts)
        root = content_id(channel_id, thread_ts) if is_reply and thread_ts is not None else cid
        message = Message(PLATFORM, cid, root, iso(when), self.ch.space_id)
        if subtype in DELETED_SUBTYPES:
            if is_root:
                self._remember_root(ts, None)
            skip("deleted")
            return
        if subtype in EDITED_SUBTYPES:
            skip("edited")
            return
        if bot:
            if is_root:
                self._remember_root(ts, None)
            skip("bot")
            # people's reactions to a bot message still count as activity (no target)
            yield from reactions(msg, message, None, users.key, users.bots, self.ctx.stats)
            return
        actor = users.key(uid) if uid is not None else None
        if actor is None:
            skip("unparseable")
            return
        kind = membership(subtype)
        if kind is not None:
            yield message.membership(kind, actor)
            return
        if subtype not in POST_SUBTYPES:
            skip("system")
            return
        if is_reply and thread_ts is not None:
            target = self._root_author(msg, thread_ts)
            yield message.reply(actor, parent_content_id=root, target_actor_id=target)
        else:
            if is_root:
                self._remember_root(ts, actor)
            yield message.post(actor)
        mentioned = slack_mentions(msg.get("text"))
        targets = (None if m in users.bots else users.key(m) for m in mentioned)
        yield from message.numbered_mentions(actor, (t for t in targets if t is not None))
        yield from reactions(msg, message, actor, users.key, users.bots, self.ctx.stats)
