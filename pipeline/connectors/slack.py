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

import hashlib
import re
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
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
from pipeline.connectors.mentions import slack_mentions

PLATFORM: Final = "slack"
DIRECT_SPACE: Final = "direct"
#: Thread roots remembered per channel (for the target of replies in later day files).
THREAD_ROOTS_PER_CHANNEL: Final = 200_000
#: A day file larger than this (uncompressed) is skipped as ``too_large``.
MAX_DAY_FILE_BYTES: Final = 256 * 1024 * 1024
_MAX_META_BYTES: Final = 512 * 1024 * 1024
_MAX_ID: Final = 200
_MAX_PERSON: Final = 320

_DAY_FILE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")
_TS: Final = re.compile(r"^(\d{1,12})(?:\.(\d{1,6}))?$")
_DM_FOLDER: Final = re.compile(r"^D[A-Z0-9]{2,}$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_POST_SUBTYPES: Final = frozenset({"", "file_share", "me_message", "thread_broadcast"})
_JOIN: Final = frozenset({"channel_join", "group_join"})
_LEAVE: Final = frozenset({"channel_leave", "group_leave"})
_DELETED: Final = frozenset({"tombstone", "message_deleted"})
_EDITED: Final = frozenset({"message_changed"})
_BOT_SUBTYPES: Final = frozenset({"bot_message", "bot_add", "bot_remove"})
_SLACKBOT: Final = "USLACKBOT"
# conversation metadata files, and whether their conversations are direct messages
_CONVERSATION_FILES: Final = (
    ("channels.json", False),
    ("groups.json", False),
    ("mpims.json", True),
    ("dms.json", True),
)
_META_FILES: Final = ("users.json", *(name for name, _ in _CONVERSATION_FILES))
# what reading a damaged (truncated, bad CRC, encrypted, odd compression) member raises
_BROKEN: Final = (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, ValueError)


def read(source: Path, ctx: ImportContext, *, person_key: str = "email") -> Iterator[RawEvent]:
    """Events of the Slack export at ``source`` (a ZIP file or an unzipped directory).

    The archive and its metadata (users, channels) are read before this returns, so an
    unreadable export raises ``ImportFormatError`` here; the messages are read as the result
    is iterated. ``person_key`` is ``"email"`` (default, falls back to the user id) or ``"id"``.
    """
    if person_key not in ("email", "id"):
        raise ValueError(f"person_key must be 'email' or 'id', got {person_key!r}")
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
    """Files of an export by name relative to its root (where ``users.json`` is)."""

    def __init__(self, label: str) -> None:
        self.label = label

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str, limit: int) -> bytes | None:
        """The file's bytes; None when larger than ``limit``; OSError/BadZipFile if broken."""
        raise NotImplementedError

    def size(self, name: str) -> int:
        """Bytes of the file in the source (compressed size in a ZIP), for progress."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ZipArchive(_Archive):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise ImportFormatError(
                f"{path}: not a readable ZIP archive (truncated or not a Slack export ZIP)"
            ) from None
        infos = [i for i in self.zf.infolist() if not i.is_dir()]
        tops = sorted(
            (i.filename for i in infos if PurePosixPath(i.filename).name == "users.json"),
            key=lambda n: (n.count("/"), n),
        )
        self.root = tops[0][: -len("users.json")] if tops else ""
        n = len(self.root)
        self.infos = {i.filename[n:]: i for i in infos if i.filename.startswith(self.root)}

    def names(self) -> list[str]:
        return list(self.infos)

    def read(self, name: str, limit: int) -> bytes | None:
        info = self.infos[name]
        if info.file_size > limit:
            return None
        with self.zf.open(info) as fh:
            data = fh.read(limit + 1)
        return None if len(data) > limit else data

    def size(self, name: str) -> int:
        return self.infos[name].compress_size

    def close(self) -> None:
        self.zf.close()


class _DirArchive(_Archive):
    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        root = path
        if not (path / "users.json").is_file():
            subs = [p for p in path.iterdir() if (p / "users.json").is_file()]
            if len(subs) == 1:
                root = subs[0]
        self.root = root

    def names(self) -> list[str]:
        out = [p.name for p in self.root.iterdir() if p.is_file()]
        for sub in self.root.iterdir():
            if sub.is_dir():
                out.extend(f"{sub.name}/{p.name}" for p in sub.iterdir() if p.is_file())
        return out

    def read(self, name: str, limit: int) -> bytes | None:
        path = self.root / name
        if path.stat().st_size > limit:
            return None
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        return None if len(data) > limit else data

    def size(self, name: str) -> int:
        try:
            return (self.root / name).stat().st_size
        except OSError:
            return 0


def _open_archive(source: Path) -> _Archive:
    archive: _Archive = _DirArchive(source) if source.is_dir() else _ZipArchive(source)
    names = set(archive.names())
    missing = [n for n in ("users.json", "channels.json") if n not in names]
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
    bots: set[str] = field(default_factory=lambda: {_SLACKBOT})

    def key(self, user_id: str) -> str | None:
        """The person key of a Slack user id (the id itself when not in users.json)."""
        key = self.keys.get(user_id, user_id)
        return key if 0 < len(key) <= _MAX_PERSON else None


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
        if u.get("is_bot") is True or uid == _SLACKBOT:
            users.bots.add(uid)
        profile = u.get("profile")
        email = profile.get("email") if isinstance(profile, dict) else None
        if person_key == "email" and isinstance(email, str) and email.strip():
            users.keys[uid] = email.strip().lower()
    return users


@dataclass(frozen=True)
class _Channel:
    channel_id: str
    space_id: str


def _load_channels(archive: _Archive, ctx: ImportContext) -> dict[str, _Channel]:
    """Folder name -> channel, from channels/groups (by name) and mpims/dms (direct)."""
    names = set(archive.names())
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
            folders[folder] = _Channel(cid, space[:_MAX_ID])
    return folders


# --------------------------------------------------------------------------------------------
# messages


def _events(
    archive: _Archive, users: _Users, channels: dict[str, _Channel], ctx: ImportContext
) -> Iterator[RawEvent]:
    try:
        names = archive.names()
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
    return _Channel(folder[:80], DIRECT_SPACE if direct else folder[:_MAX_ID])


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


def _short_hash(value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def _fit(value: str) -> str:
    """An id within the contract's 200 characters (a hash of it when longer)."""
    if len(value) <= _MAX_ID:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{PLATFORM}:h:{digest.hexdigest()}"


class _ChannelReader:
    """Turns the messages of one conversation (in time order) into events."""

    def __init__(self, channel: _Channel, users: _Users, ctx: ImportContext) -> None:
        self.ch = channel
        self.users = users
        self.ctx = ctx
        # thread_ts -> author key of the root (None: deleted, a bot, unknown)
        self.roots: OrderedDict[str, str | None] = OrderedDict()

    def cid(self, ts: str) -> str:
        return _fit(f"{PLATFORM}:{self.ch.channel_id}:{ts}")

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
        bot = (
            subtype in _BOT_SUBTYPES
            or bool(msg.get("bot_id"))
            or (uid is not None and uid in self.users.bots)
        )
        if subtype in _DELETED:
            if is_root:
                self._remember_root(ts, None)
            skip("deleted")
            return
        if subtype in _EDITED:
            skip("edited")
            return
        if bot:
            if is_root:
                self._remember_root(ts, None)
            skip("bot")
            # people's reactions to a bot message still count as activity (no target)
            cid = self.cid(ts)
            root = self.cid(thread_ts) if is_reply and thread_ts else cid
            yield from self._reactions(msg, when, cid, root, None)
            return
        actor = self.users.key(uid) if uid is not None else None
        if actor is None:
            skip("unparseable")
            return
        occurred = iso(when)
        space = self.ch.space_id
        if subtype in _JOIN or subtype in _LEAVE:
            kind = "member_joined" if subtype in _JOIN else "member_left"
            yield event(self.cid(ts), kind, occurred, actor, platform=PLATFORM, space_id=space)
            return
        if subtype not in _POST_SUBTYPES:
            skip("system")
            return
        cid = self.cid(ts)
        if is_reply and thread_ts is not None:
            root = self.cid(thread_ts)
            yield event(
                cid,
                "reply_created",
                occurred,
                actor,
                platform=PLATFORM,
                space_id=space,
                target_actor_id=self._root_author(msg, thread_ts),
                content_id=cid,
                parent_content_id=root,
                root_content_id=root,
            )
        else:
            root = cid
            if is_root:
                self._remember_root(ts, actor)
            yield event(
                cid,
                "post_created",
                occurred,
                actor,
                platform=PLATFORM,
                space_id=space,
                content_id=cid,
                root_content_id=cid,
            )
        k = 0
        for mentioned in slack_mentions(msg.get("text")):
            target = None if mentioned in self.users.bots else self.users.key(mentioned)
            if target is None:
                continue
            yield event(
                _fit(f"{cid}:mention:{k}"),
                "mention",
                occurred,
                actor,
                platform=PLATFORM,
                space_id=space,
                target_actor_id=target,
                content_id=cid,
                root_content_id=root,
            )
            k += 1
        yield from self._reactions(msg, when, cid, root, actor)

    def _reactions(
        self, msg: dict[str, Any], when: datetime, cid: str, root: str, author: str | None
    ) -> Iterator[RawEvent]:
        reactions = msg.get("reactions")
        if not reactions:
            return
        skip = self.ctx.stats.skip
        if not isinstance(reactions, list):
            skip("unparseable")
            return
        occurred = iso(when)
        for reaction in reactions:
            name = reaction.get("name") if isinstance(reaction, dict) else None
            people = reaction.get("users") if isinstance(reaction, dict) else None
            if not isinstance(name, str) or not isinstance(people, list):
                skip("unparseable")
                continue
            count = reaction.get("count")
            if isinstance(count, int) and not isinstance(count, bool) and count > len(people):
                skip("reaction_users_unknown", count - len(people))
            emoji = _short_hash(name)
            for i, uid in enumerate(people):
                if not isinstance(uid, str) or not uid:
                    skip("unparseable")
                    continue
                if uid in self.users.bots:
                    skip("bot")
                    continue
                actor = self.users.key(uid)
                if actor is None:
                    skip("unparseable")
                    continue
                yield event(
                    _fit(f"{cid}:reaction:{emoji}:{i}"),
                    "reaction_added",
                    occurred,
                    actor,
                    platform=PLATFORM,
                    space_id=self.ch.space_id,
                    target_actor_id=author,
                    content_id=cid,
                    root_content_id=root,
                )
