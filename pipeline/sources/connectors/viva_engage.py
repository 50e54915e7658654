"""Viva Engage (Yammer) network data export as contract v1 events.

The export (admin centre "Export tenant data" or the Data Export API) is a ZIP with one CSV per
model; an unzipped directory is accepted too, and so are several networks (a folder each).
Read: ``Messages.csv`` (posts, replies, ``[[user:ID]]`` mentions in ``body``), ``Users.csv``
(``joined_at`` / ``deleted_at`` / ``suspended_at`` as membership, ``department`` as unit) and
``Groups.csv`` (group names when a message row lacks ``group_name``). ``MessageVersions.csv``
(earlier versions of edited messages), ``Files.csv``, ``Topics.csv`` and the rest hold no
participation the contract can express and are not opened.

Person key: the user's e-mail address, lower-cased, from ``Users.csv`` (else the message row's
``sender_email``); a user known only by id becomes ``viva-engage:<id>``. Ids (``content_id``,
``event_id``) are ``viva-engage:<message id>``: stable, so re-importing overlapping exports
yields the same events. Message text is only searched for ``[[user:ID]]`` tokens.

Mapping: a message without ``replied_to_id`` -> ``post_created`` (root = ``thread_id``); with it
-> ``reply_created`` (parent = ``replied_to_id``, root = ``thread_id``, target = the parent's
sender when the parent is in the export and was sent by a person); each distinct
``[[user:ID]]`` in ``body`` -> ``mention`` (the sender's own too, as the other readers: the
analyst views leave self-ties out); space = ``group_name`` (else
the Groups.csv name, else ``group:<id>``). Messages of private conversations are kept (they are
collaboration too) without a space; ``participants`` are not turned into ties. Skipped, by
reason: ``deleted`` (``deleted_at`` set), ``draft``, ``system`` (``sender_type`` or
``message_type`` system), ``bot`` (any other non-user sender), ``duplicate`` (a message id
again), ``unparseable`` (wrong column count, no id/sender, bad time; also bad Users.csv and
Groups.csv rows), ``damaged_file`` (an unreadable Users.csv/Groups.csv member; a damaged
Messages.csv is an ImportFormatError before any message event). Membership: ``joined_at`` ->
``member_joined``; ``deleted_at``, or ``suspended_at`` of a user no longer ``active`` ->
``member_left`` (no space). Edits (MessageVersions.csv) add nothing: a message counts once.

Messages.csv is not ordered, so a reply's parent can come after it. The file is read twice:
pass 1 keeps message id -> sender id (two ints per message, ~80 bytes with dict overhead: ~80 MB
per million messages, measured) and sender id -> e-mail, and checks the whole member is
readable before any message event leaves; pass 2 yields the events (so: twice the CSV parsing
time). Users.csv is read twice too (small).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from pipeline.sources.connectors.base import (
    DAMAGED,
    MAX_ID,
    MAX_PERSON,
    ExportFiles,
    ImportContext,
    ImportFormatError,
    Message,
    RawEvent,
    event,
    iso,
    parse_iso,
    source_files,
)

PLATFORM: Final = "viva-engage"
MESSAGES: Final = "messages.csv"
USERS: Final = "users.csv"
GROUPS: Final = "groups.csv"
_MENTION: Final = re.compile(r"\[\[user:(\d+)\]\]")
_TRUE: Final = frozenset({"true", "1", "yes", "t"})
_FIELD_LIMIT: Final = 64 * 1024 * 1024  # message bodies can exceed csv's 128 KiB default
_PROGRESS_ROWS: Final = 5000
_MESSAGE_COLUMNS: Final = ("id", "sender_id", "created_at")
_EXPECTED: Final = "a Viva Engage network data export (ZIP of CSV files) or its unzipped directory"


def read(source: Path, ctx: ImportContext) -> Iterator[RawEvent]:
    """Events of a Viva Engage network data export (ZIP or unzipped directory)."""
    with _Export(source_files(source)) as export:
        for folder in export.networks():
            yield from _Network(export, folder, ctx).events()


# --------------------------------------------------------------------------------------------
# the export container


class _Counting(io.RawIOBase):
    """A binary stream that counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.n += n
        return n


class _Export(ExportFiles):
    """A ZIP export or a directory: members by folder and lower-cased file name."""

    def __init__(self, source: Path) -> None:
        super().__init__(source, _EXPECTED)
        self.members: dict[tuple[str, str], str] = {}  # (folder, lower name) -> member name
        for name in self.names:
            p = PurePosixPath(name)
            self.members[(str(p.parent), p.name.lower())] = name

    def networks(self) -> list[str]:
        """Folders holding a Messages.csv (one per network), shallowest first."""
        folders = sorted(
            (f for f, n in self.members if n == MESSAGES), key=lambda f: (f.count("/"), f)
        )
        if not folders:
            raise ImportFormatError(
                f"{self.source}: no Messages.csv in the export; expected a Viva Engage network "
                "data export (Messages.csv, Users.csv, Groups.csv, ...)"
            )
        return folders

    def member(self, folder: str, name: str) -> str | None:
        return self.members.get((folder, name))


@dataclass
class _Table:
    """One CSV member read row by row; bad rows come back as None (counted by the caller)."""

    export: _Export
    member: str
    required: tuple[str, ...]
    progress: Callable[[int], None] | None = None
    share: float = 1.0  # of the member's source bytes reported by this read (two passes: 0.5)

    def rows(self) -> Iterator[tuple[dict[str, int], list[str] | None]]:
        """(column index by lower-cased name, row or None when malformed), header excluded."""
        if csv.field_size_limit() < _FIELD_LIMIT:
            csv.field_size_limit(_FIELD_LIMIT)
        in_source, uncompressed = self.export.sizes(self.member)
        ratio = self.share * in_source / uncompressed if uncompressed else 0.0
        reported = 0
        with self.export.open(self.member) as raw:
            counting = _Counting(raw)
            text = io.TextIOWrapper(
                io.BufferedReader(counting), encoding="utf-8-sig", errors="replace", newline=""
            )
            reader = csv.reader(text)
            try:
                header = next(reader)
            except StopIteration:
                return
            except csv.Error:
                raise ImportFormatError(
                    f"{self.export.source}: {self.member} has an unreadable header row"
                ) from None
            cols = {name.strip().lower(): i for i, name in enumerate(header)}
            missing = [c for c in self.required if c not in cols]
            if missing:
                raise ImportFormatError(
                    f"{self.export.source}: {self.member} lacks column(s) {', '.join(missing)}"
                )
            width = len(header)
            n = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error:
                    yield cols, None
                    continue
                if not row:
                    continue  # blank line: no record
                yield cols, (row if len(row) == width else None)
                n += 1
                if self.progress is not None and n % _PROGRESS_ROWS == 0:
                    now = int(counting.n * ratio)
                    self.progress(now - reported)
                    reported = now
            if self.progress is not None:
                self.progress(int(in_source * self.share) - reported)


# --------------------------------------------------------------------------------------------
# one network


def _num(value: str) -> int | str:
    """Yammer ids are integers: kept as ints (smaller); anything else (or "007") as text."""
    if value.isascii() and value.isdigit() and (value[0] != "0" or value == "0"):
        return int(value)
    return value


def _parse_time(value: str) -> datetime | None:
    """``2024-03-01 10:12:13 UTC``, ISO 8601 (``Z`` or offset) or ``... +0000``; None if bad."""
    s = value.strip()
    if not s:
        return None
    if s.endswith(" UTC"):
        s = s[:-4] + "+00:00"
    ts = parse_iso(s)
    if ts is None:
        try:
            ts = datetime.strptime(s, "%Y-%m-%d %H:%M:%S %z")  # always with its offset
        except ValueError:
            return None
    return ts


def _cell(row: list[str], cols: dict[str, int], name: str) -> str:
    i = cols.get(name)
    return row[i].strip() if i is not None else ""


class _Network:
    """One network folder of the export: its users, groups and messages."""

    def __init__(self, export: _Export, folder: str, ctx: ImportContext) -> None:
        self.export, self.folder, self.ctx = export, folder, ctx
        self.stats = ctx.stats
        self.emails: dict[str, str] = {}  # user id -> lower-cased e-mail
        self.groups: dict[str, str] = {}  # group id -> name
        self.authors: dict[int | str, int | str] = {}  # message id -> sender id ("" = no person)
        self.repeated: set[int | str] = set()  # message ids seen more than once

    def _member(self, name: str) -> str | None:
        return self.export.member(self.folder, name)

    def events(self) -> Iterator[RawEvent]:
        messages = self._member(MESSAGES)
        assert messages is not None
        self._load_groups()
        self._load_users()
        self._index_messages(messages)
        yield from self._membership()
        yield from self._messages(messages)

    # ---- small tables ---------------------------------------------------------------------

    def _load_groups(self) -> None:
        """Group id -> name from Groups.csv (optional; names only, no events)."""
        member = self._member(GROUPS)
        if member is None:
            return
        try:
            for cols, row in _Table(self.export, member, ("id", "name")).rows():
                if row is None:
                    self.stats.skip("unparseable")
                    continue
                gid, name = _cell(row, cols, "id"), _cell(row, cols, "name")
                if gid and name:
                    self.groups[gid] = name
        except DAMAGED:
            self.stats.skip("damaged_file")

    def _load_users(self) -> None:
        """User id -> e-mail from Users.csv (optional); bad rows are counted in ``_membership``."""
        member = self._member(USERS)
        if member is None:
            return
        try:
            for cols, row in _Table(self.export, member, ("id",)).rows():
                if row is not None:
                    uid, email = _cell(row, cols, "id"), _cell(row, cols, "email").lower()
                    if uid and email and len(email) <= MAX_PERSON:
                        self.emails[uid] = email
        except DAMAGED:
            pass  # counted once, in _membership

    def key(self, user_id: str) -> str:
        """The person key of a user id: e-mail when known, else ``viva-engage:<id>``."""
        return self.emails.get(user_id) or f"{PLATFORM}:{user_id}"

    # ---- pass 1 over Messages.csv ---------------------------------------------------------

    def _index_messages(self, member: str) -> None:
        authors, repeated = self.authors, self.repeated
        senders: dict[str, int | str] = {}  # one int object per sender, shared by messages
        try:
            table = _Table(self.export, member, _MESSAGE_COLUMNS, self.ctx.progress, 0.5)
            for cols, row in table.rows():
                if row is None:
                    continue
                mid = _cell(row, cols, "id")
                if not mid:
                    continue
                sid = _cell(row, cols, "sender_id")
                if _cell(row, cols, "sender_type").lower() not in ("", "user"):
                    sid = ""
                elif sid not in self.emails:
                    email = _cell(row, cols, "sender_email").lower()
                    if email and sid and len(email) <= MAX_PERSON:
                        self.emails[sid] = email
                key = _num(mid)
                if key in authors:
                    repeated.add(key)
                authors[key] = senders.setdefault(sid, _num(sid) if sid else "")
        except DAMAGED as exc:
            raise ImportFormatError(
                f"{self.export.source}: {member} is damaged and cannot be read "
                f"({type(exc).__name__})"
            ) from None

    # ---- pass 2: events -------------------------------------------------------------------

    def _membership(self) -> Iterator[RawEvent]:
        """Profiles into ctx.people and member_joined / member_left from Users.csv."""
        member = self._member(USERS)
        if member is None:
            return
        stats = self.stats
        try:
            for cols, row in _Table(self.export, member, ("id",), self.ctx.progress).rows():
                if row is None:
                    stats.skip("unparseable")
                    continue
                uid = _cell(row, cols, "id")
                if not uid:
                    stats.skip("unparseable")
                    continue
                key = self.key(uid)
                attrs: dict[str, str] = {}
                for column, attr in (("department", "unit"), ("location", "location")):
                    value = _cell(row, cols, column)
                    if value:
                        attrs[attr] = value
                if attrs:
                    self.ctx.people.setdefault(key, {}).update(attrs)
                times: list[tuple[str, str]] = [("member_joined", _cell(row, cols, "joined_at"))]
                left = _cell(row, cols, "deleted_at")
                if not left and _cell(row, cols, "state").lower() not in ("", "active"):
                    left = _cell(row, cols, "suspended_at")  # deactivated, not deleted
                times.append(("member_left", left))
                for kind, value in times:
                    if not value:
                        continue
                    ts = _parse_time(value)
                    if ts is None:
                        stats.skip("unparseable")
                        continue
                    suffix = "joined" if kind == "member_joined" else "left"
                    yield event(
                        f"{PLATFORM}:user:{uid}:{suffix}", kind, iso(ts), key, platform=PLATFORM
                    )
        except DAMAGED:
            stats.skip("damaged_file")

    def _space(self, row: list[str], cols: dict[str, int]) -> str | None:
        """The group's name (Messages.csv, else Groups.csv), else ``group:<id>``; None for a
        private conversation. A name over the contract's 200 characters becomes the id."""
        gid = _cell(row, cols, "group_id")
        name = _cell(row, cols, "group_name") or self.groups.get(gid, "")
        if name and len(name) <= MAX_ID:
            return name
        return f"group:{gid}"[:MAX_ID] if gid else None

    def _messages(self, member: str) -> Iterator[RawEvent]:
        stats, authors, repeated = self.stats, self.authors, self.repeated
        emitted_repeats: set[int | str] = set()
        table = _Table(self.export, member, _MESSAGE_COLUMNS, self.ctx.progress, 0.5)
        for cols, row in table.rows():
            if row is None:
                stats.skip("unparseable")
                continue
            mid = _cell(row, cols, "id")
            sid = _cell(row, cols, "sender_id")
            if not mid or not sid:
                stats.skip("unparseable")
                continue
            if _cell(row, cols, "deleted_at"):
                stats.skip("deleted")
                continue
            if (_cell(row, cols, "draft") or _cell(row, cols, "is_draft")).lower() in _TRUE:
                stats.skip("draft")
                continue
            sender_type = _cell(row, cols, "sender_type").lower()
            if sender_type == "system" or _cell(row, cols, "message_type").lower() == "system":
                stats.skip("system")
                continue
            if sender_type not in ("", "user"):
                stats.skip("bot")
                continue
            ts = _parse_time(_cell(row, cols, "created_at"))
            if ts is None:
                stats.skip("unparseable")
                continue
            key = _num(mid)
            if key in repeated:
                if key in emitted_repeats:
                    stats.skip("duplicate")
                    continue
                emitted_repeats.add(key)
            yield from self._message_events(row, cols, mid, sid, iso(ts), authors)

    def _message_events(
        self,
        row: list[str],
        cols: dict[str, int],
        mid: str,
        sid: str,
        at: str,
        authors: dict[int | str, int | str],
    ) -> Iterator[RawEvent]:
        actor = self.key(sid)
        cid = f"{PLATFORM}:{mid}"
        thread = _cell(row, cols, "thread_id")
        root = f"{PLATFORM}:{thread}" if thread else cid
        message = Message(PLATFORM, cid, root, at, self._space(row, cols))
        parent = _cell(row, cols, "replied_to_id")
        if parent:
            author = authors.get(_num(parent), "")
            yield message.reply(
                actor,
                parent_content_id=f"{PLATFORM}:{parent}",
                target_actor_id=self.key(str(author)) if author != "" else None,
            )
        else:
            yield message.post(actor)
        body = _cell(row, cols, "body")
        if "[[user:" not in body:
            return
        for uid in dict.fromkeys(_MENTION.findall(body)):
            yield message.mention(f"{cid}:mention:{uid}", actor, self.key(uid))
