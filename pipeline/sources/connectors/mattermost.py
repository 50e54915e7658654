"""Mattermost bulk export (JSON lines, as ``mmctl export`` writes it) as contract v1 events.

Format (Mattermost, "Bulk loading data format"): one object per line, ``version`` first, then
``scheme``/``emoji``/``team``/``channel``/``user`` lines, ``post`` lines (``team``, ``channel``,
``user``, ``message``, ``create_at`` in ms, ``type``, ``props``, nested ``replies`` and
``reactions``, each with its own ``create_at``), ``direct_channel`` and ``direct_post`` lines
(``channel_members`` instead of team/channel). Accepted: ``.jsonl``, ``.jsonl.gz``, or the ZIP
of ``mmctl export`` (its one ``.jsonl`` member is streamed).

Mapping (``cid = "mattermost:<team>/<channel>:<create_at>"``, DMs ``"mattermost:direct:<ms>"``;
a reply ``"<post cid>:<create_at>"``):

* ``post`` / ``direct_post`` -> ``post_created``; space ``<team>/<channel>``, DMs and group
  messages all the one space ``direct`` (no tie to the other members is implied)
* ``replies[]`` -> ``reply_created`` towards the post's author, parent = root = the post
* ``reactions[]`` (of a post or a reply) -> ``reaction_added`` towards that message's author,
  at the reaction's own ``create_at``
* ``@username`` of a known user in ``message`` -> one ``mention`` per distinct person
  (``@channel``/``@here``/``@all``, groups and unknown names are not person mentions)
* post types ``system_join_channel`` / ``system_leave_channel`` -> ``member_joined`` /
  ``member_left`` of the poster; ``system_add_to_channel`` / ``system_remove_from_channel``
  -> the same for ``props.addedUsername`` / ``props.removedUsername``
* skipped, by reason: ``unparseable`` (a line that is not a JSON object, a post or reply
  without ``user``/``create_at``/``team``/``channel``, a bad reaction), ``unknown_type``
  (a line type this reader does not know), ``bot`` (``props.from_bot``/``from_webhook``/
  ``from_plugin``, a ``bot`` line's user; per message and per reaction), ``system`` (other
  non-empty post types: ``system_*``, ``custom_*``), ``deleted`` (``delete_at`` > 0; a skipped
  post counts its replies too), ``too_large`` (a line over ``MAX_LINE_BYTES``). Edits
  (``edit_at``) count once. A damaged ``.gz``/ZIP stream raises ``ImportFormatError``.
* not events: memberships in ``user`` lines (no time), ``flagged_by``, pins, read state.

Person key: the user's e-mail (lower-cased) when the ``user`` line has it, so that events join
an HR directory keyed by e-mail; otherwise, or with ``person_key="id"``, the username.
``position`` is a job title, not a unit: ``ctx.people`` stays empty. Ids hold no person id;
two posts of one channel in the same millisecond would share an id (Mattermost exports none).
Memory: the user map and one line (a post with its thread) at a time.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, cast

import orjson

from pipeline.sources.connectors.base import (
    DAMAGED,
    MAX_ID,
    MAX_PERSON,
    ImportContext,
    ImportFormatError,
    Message,
    Progress,
    RawEvent,
    check_person_key,
    email_key,
    fit_id,
    iso,
    short_hash,
    source_files,
)
from pipeline.sources.connectors.mentions import at_mentions

PLATFORM: Final = "mattermost"
DIRECT_SPACE: Final = "direct"
#: Line types that carry no events (read or ignored on purpose).
_QUIET_TYPES: Final = frozenset(
    {"version", "scheme", "role", "emoji", "team", "channel", "direct_channel"}
)
#: Post types of membership -> (event, prop naming the member; None: the poster). The
#: Perceval reader maps Mattermost API posts by the same table.
MEMBERSHIP_TYPES: Final[dict[str, tuple[str, str | None]]] = {
    "system_join_channel": ("member_joined", None),
    "system_leave_channel": ("member_left", None),
    "system_add_to_channel": ("member_joined", "addedUsername"),
    "system_remove_from_channel": ("member_left", "removedUsername"),
}
_BOT_PROPS: Final = ("from_bot", "from_webhook", "from_plugin")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: A line (one post with its whole thread) longer than this is skipped as ``too_large``.
MAX_LINE_BYTES: Final = 64 * 1024 * 1024


def read(source: Path, ctx: ImportContext, *, person_key: str = "email") -> Iterator[RawEvent]:
    """Events of the Mattermost bulk export at ``source`` (``.jsonl``, ``.jsonl.gz``, ``.zip``).

    The file is opened and its first line checked (a ``version`` object) before this returns,
    so a file that is not a bulk export raises ``ImportFormatError`` here; the rest is read
    line by line as the result is iterated. ``person_key`` is ``"email"`` (default, falls back
    to the username) or ``"id"`` (the username).
    """
    check_person_key(person_key)
    stream = _Stream(source_files(source))
    try:
        stream.check_first_line()
    except BaseException:
        stream.close()
        raise
    return _events(stream, ctx, person_key)


class _Stream:
    """Lines of the export and the bytes of the file read so far (for progress)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.closers: list[IO[bytes] | zipfile.ZipFile] = []
        try:
            raw: IO[bytes] = open(path, "rb")
            self.closers.append(raw)
            self.raw = raw
            magic = raw.read(4)
            raw.seek(0)
            if magic.startswith(b"PK\x03\x04"):
                zf = zipfile.ZipFile(raw)
                self.closers.append(zf)
                members = [i for i in zf.infolist() if i.filename.endswith(".jsonl")]
                if len(members) != 1:
                    raise ImportFormatError(
                        f"{path}: a ZIP with {len(members)} .jsonl files, expected one bulk export"
                    )
                self.lines: IO[bytes] = zf.open(members[0])
            elif magic.startswith(b"\x1f\x8b"):
                self.lines = cast(IO[bytes], gzip.GzipFile(fileobj=raw))
            else:
                self.lines = raw
        except ImportFormatError:
            self.close()
            raise
        except (*DAMAGED, ValueError):
            self.close()
            raise ImportFormatError(f"{path}: cannot be opened as a bulk export") from None
        if self.lines is not raw:
            self.closers.insert(0, self.lines)

    def next_line(self) -> bytes | None:
        """The next line; b"" at the end, None (rest of it consumed) when over MAX_LINE_BYTES."""
        try:
            line = self.lines.readline(MAX_LINE_BYTES + 1)
            if len(line) <= MAX_LINE_BYTES or line.endswith(b"\n"):
                return line
            while line and not line.endswith(b"\n"):
                line = self.lines.readline(MAX_LINE_BYTES)
            return None
        except DAMAGED:
            raise ImportFormatError(
                f"{self.path}: damaged or truncated compressed data (no further lines readable)"
            ) from None

    def check_first_line(self) -> None:
        """ImportFormatError unless the first line is the ``version`` object."""
        line = self.next_line() or b""
        try:
            doc = orjson.loads(line.removeprefix(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict) or doc.get("type") != "version":
            raise ImportFormatError(
                f"{self.path}: not a Mattermost bulk export (the first line must be the "
                "version object)"
            )

    def position(self) -> int:
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return 0

    def close(self) -> None:
        for c in self.closers:
            try:
                c.close()
            except Exception:  # closing a damaged archive must not mask the cause
                pass


@dataclass
class _Users:
    keys: dict[str, str] = field(default_factory=dict)  # username (lower case) -> person key
    bots: set[str] = field(default_factory=set)

    def key(self, username: object) -> str | None:
        """The person key of a username (the username itself when not in a user line)."""
        if not isinstance(username, str) or not username:
            return None
        name = username.lower()
        key = self.keys.get(name, name)
        return key if len(key) <= MAX_PERSON else None


def _events(stream: _Stream, ctx: ImportContext, person_key: str) -> Iterator[RawEvent]:
    users = _Users()
    reader = _PostReader(users, ctx)
    skip = ctx.stats.skip
    progress = Progress(ctx.progress)
    try:
        while True:
            line = stream.next_line()
            if line is None:
                skip("too_large")
                continue
            if not line:
                break
            progress.at(stream.position())
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                skip("unparseable")
                continue
            kind = doc.get("type") if isinstance(doc, dict) else None
            if not isinstance(kind, str):
                skip("unparseable")
                continue
            body = doc.get(kind)
            if kind in _QUIET_TYPES:
                continue
            if kind == "user":
                _user(body, users, person_key, ctx)
            elif kind == "bot":
                name = body.get("username") if isinstance(body, dict) else None
                if isinstance(name, str) and name:
                    users.bots.add(name.lower())
            elif kind in ("post", "direct_post"):
                yield from reader.post(body, direct=kind == "direct_post")
            else:
                skip("unknown_type")
        progress.end(stream.position())
    finally:
        stream.close()


def _user(body: object, users: _Users, person_key: str, ctx: ImportContext) -> None:
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(name, str) or not name:
        ctx.stats.skip("unparseable")
        return
    name = name.lower()
    email = email_key(body.get("email")) if person_key == "email" else None
    users.keys[name] = email or name


def _ms(value: object) -> datetime | None:
    """Epoch milliseconds as an exact UTC datetime; None when not a plausible integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        return None


def _is_bot(msg: dict[str, Any], users: _Users) -> bool:
    props = msg.get("props")
    if isinstance(props, dict) and any(props.get(k) in (True, "true") for k in _BOT_PROPS):
        return True
    user = msg.get("user")
    return isinstance(user, str) and user.lower() in users.bots


def deleted(msg: dict[str, Any]) -> bool:
    """Whether a post (export or API) has a ``delete_at`` time."""
    d = msg.get("delete_at")
    return isinstance(d, int) and not isinstance(d, bool) and d > 0


class _PostReader:
    """Turns one post or direct post (with its replies and reactions) into events."""

    def __init__(self, users: _Users, ctx: ImportContext) -> None:
        self.users = users
        self.ctx = ctx

    def post(self, body: object, direct: bool) -> Iterator[RawEvent]:
        skip = self.ctx.stats.skip
        if not isinstance(body, dict):
            skip("unparseable")
            return
        replies = body.get("replies")
        if replies is None:
            replies = []
        n = 1 + (len(replies) if isinstance(replies, list) else 0)
        when = _ms(body.get("create_at"))
        if direct:
            members = body.get("channel_members")
            ok = isinstance(members, list) and all(isinstance(m, str) for m in members)
            space, base = DIRECT_SPACE, f"{PLATFORM}:{DIRECT_SPACE}"
        else:
            team, channel = body.get("team"), body.get("channel")
            ok = isinstance(team, str) and isinstance(channel, str) and bool(team and channel)
            space = f"{team}/{channel}"
            base = f"{PLATFORM}:{space}"
        if not ok or when is None or len(space) > MAX_ID or not isinstance(replies, list):
            skip("unparseable", n)
            return
        if deleted(body):
            skip("deleted", n)
            return
        cid = fit_id(f"{base}:{body['create_at']}", PLATFORM)
        message = Message(PLATFORM, cid, cid, iso(when), space)
        post_type = body.get("type") or ""
        if not isinstance(post_type, str):
            skip("unparseable", n)
            return
        if post_type:
            yield from self._system(body, post_type, message)
            if n > 1:
                skip("system", n - 1)  # replies to a system message
            return
        author: str | None = None
        if _is_bot(body, self.users):
            skip("bot")
        else:
            author = self.users.key(body.get("user"))
            if author is None:
                skip("unparseable", n)
                return
            yield message.post(author)
            yield from self._mentions(body, message, author)
        yield from self._reactions(body, message, author)
        seen: dict[int, int] = {}
        for reply in replies:
            yield from self._reply(reply, author, message, seen)

    def _system(self, body: dict[str, Any], post_type: str, message: Message) -> Iterator[RawEvent]:
        if post_type not in MEMBERSHIP_TYPES:
            self.ctx.stats.skip("system")
            return
        kind, prop = MEMBERSHIP_TYPES[post_type]
        props = body.get("props")
        who = props.get(prop) if prop and isinstance(props, dict) else body.get("user")
        actor = self.users.key(who)
        if actor is not None and not (isinstance(who, str) and who.lower() in self.users.bots):
            yield message.membership(kind, actor)
            return
        self.ctx.stats.skip("bot" if actor is not None else "unparseable")

    def _reply(
        self, reply: object, root_author: str | None, post: Message, seen: dict[int, int]
    ) -> Iterator[RawEvent]:
        skip = self.ctx.stats.skip
        if not isinstance(reply, dict):
            skip("unparseable")
            return
        when = _ms(reply.get("create_at"))
        if when is None:
            skip("unparseable")
            return
        if deleted(reply):
            skip("deleted")
            return
        reply_type = reply.get("type") or ""
        if reply_type:
            skip("system" if isinstance(reply_type, str) else "unparseable")
            return
        ms = reply["create_at"]
        dup = seen.get(ms, 0)
        seen[ms] = dup + 1
        cid = fit_id(f"{post.content_id}:{ms}" + (f":{dup}" if dup else ""), PLATFORM)
        message = Message(PLATFORM, cid, post.content_id, iso(when), post.space_id)
        author: str | None = None
        if _is_bot(reply, self.users):
            skip("bot")
        else:
            author = self.users.key(reply.get("user"))
            if author is None:
                skip("unparseable")
                return
            yield message.reply(
                author, parent_content_id=post.content_id, target_actor_id=root_author
            )
            yield from self._mentions(reply, message, author)
        yield from self._reactions(reply, message, author)

    def _mentions(self, msg: dict[str, Any], message: Message, actor: str) -> Iterator[RawEvent]:
        known, bots = self.users.keys, self.users.bots
        names = at_mentions(msg.get("message"), known)
        yield from message.numbered_mentions(actor, (known[n] for n in names if n not in bots))

    def _reactions(
        self, msg: dict[str, Any], message: Message, author: str | None
    ) -> Iterator[RawEvent]:
        reactions = msg.get("reactions")
        if not reactions:
            return
        skip = self.ctx.stats.skip
        if not isinstance(reactions, list):
            skip("unparseable")
            return
        seen: dict[tuple[str, int], int] = {}
        for r in reactions:
            if not isinstance(r, dict):
                skip("unparseable")
                continue
            emoji, when, user = r.get("emoji_name"), _ms(r.get("create_at")), r.get("user")
            if not isinstance(emoji, str) or when is None:
                skip("unparseable")
                continue
            if isinstance(user, str) and user.lower() in self.users.bots:
                skip("bot")
                continue
            actor = self.users.key(user)
            if actor is None:
                skip("unparseable")
                continue
            key = (emoji, r["create_at"])
            dup = seen.get(key, 0)
            seen[key] = dup + 1
            tail = f":{r['create_at']}" + (f":{dup}" if dup else "")
            event_id = fit_id(f"{message.content_id}:reaction:{short_hash(emoji)}{tail}", PLATFORM)
            yield message.reaction(event_id, actor, author, iso(when))
