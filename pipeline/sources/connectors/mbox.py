"""Mail archives (mbox; plain, gzip or bzip2; a file or a directory of them) as events.

Only headers are read; subject and body are never parsed (a message's body is skipped line by
line, so a huge attachment costs no memory). A message is split off at a ``From `` line that
starts the file or follows a blank line.

Mapping (``MailThreads`` is shared with the Perceval reader, so both give the same events):

* a message without ``In-Reply-To``/``References`` -> ``post_created``; with them ->
  ``reply_created`` (parent = first ``In-Reply-To`` id, else the last ``References`` id; root =
  the parent's root when the parent is remembered, else the first ``References`` id, else the
  parent); target = the parent's author when the parent came earlier in the archive (mailing
  list archives are chronological), else none.
* every ``To``/``Cc`` address except the sender, the list's own addresses (``List-Post``,
  ``X-BeenThere``, the address matching ``List-Id``) and the reply's target -> one ``mention``
  (actor -> recipient): the contract has no "message sent to"; addressing someone is the mail
  equivalent of mentioning them. ``Bcc`` is ignored.
* person key = lower-cased e-mail address; space = the ``List-Id`` (lower-cased, hashed if it
  looks like an address), else ``mbox``; platform ``mail``.
* Message-IDs contain host names, so ids are hashed: ``content_id`` = ``mbox:`` + first 24 hex
  of sha256(Message-ID); a mention's ``event_id`` adds a hash of the recipient.

Skipped: ``unparseable`` (no Message-ID, Date or From address, a bad date, leading garbage, a
message without headers), ``bot`` (``Auto-Submitted`` other than ``no``, RFC 3834; ``Precedence:
bulk/junk/auto_reply``; ``Precedence: list`` is what every list mail carries and is kept),
``duplicate`` (a Message-ID seen before), ``truncated`` (a compressed file that ends early).

Memory: the last ``MAX_REMEMBERED`` messages (12-byte digest -> author, root; ~230 bytes each,
~50 MB, measured) are remembered for threading and duplicates; older parents lose their reply
target and older duplicates are not recognised.
"""

from __future__ import annotations

import bz2
import email.utils
import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import IO, Final

from pipeline.sources.connectors.base import (
    MAX_ID,
    MAX_PERSON,
    PROGRESS_STEP,
    ImportContext,
    ImportFormatError,
    Message,
    RawEvent,
    assume_utc,
    iso,
    open_source,
    parse_iso,
    source_files,
)

PLATFORM: Final = "mail"
DEFAULT_SPACE: Final = "mbox"
MAX_REMEMBERED: Final = 200_000
_MAX_HEADER_BYTES: Final = 1 << 20  # a header block larger than this is not a mail
_SNIFF_BYTES: Final = 1 << 20  # a "From " line must appear this early
_MSGID: Final = re.compile(r"<([^<>]+)>")
_BOT_PRECEDENCE: Final = frozenset({"bulk", "junk", "auto_reply"})


def read(source: Path, ctx: ImportContext) -> Iterator[RawEvent]:
    """Events of one mbox file or of every file below a directory (sorted by name)."""
    threads = MailThreads()
    for path in _mbox_files(source_files(source)):
        for headers in _header_blocks(path, ctx):
            if headers is None:
                ctx.stats.skip("unparseable")
                continue
            yield from threads.events(headers, ctx)


# --------------------------------------------------------------------------------------------
# the header mapping (shared with pipeline.sources.connectors.perceval)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def message_id(value: str | None) -> str | None:
    """The id inside ``<...>`` (whitespace removed), or the bare value; None when empty."""
    if not value:
        return None
    m = _MSGID.search(value)
    mid = "".join((m.group(1) if m else value).split())
    return mid or None


def message_ids(value: str | None) -> list[str]:
    """All ``<...>`` ids of a References / In-Reply-To header, in order."""
    if not value:
        return []
    return ["".join(m.split()) for m in _MSGID.findall(value) if m.strip()]


def content_id(mid: str) -> str:
    """``mbox:`` + 24 hex of sha256(Message-ID): no host name or address in the id."""
    return "mbox:" + _digest(mid)[:24]


def addresses(*values: str | None) -> list[str]:
    """Lower-cased addresses (with an ``@``, at most the contract's 320 characters) of address
    headers, in order, without repeats."""
    found = email.utils.getaddresses([v for v in values if v])
    out = dict.fromkeys(a.strip().lower() for _, a in found if "@" in a and len(a) <= MAX_PERSON)
    return list(out)


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date (or ISO 8601) as an aware datetime; None when missing or bad."""
    if not value:
        return None
    try:
        ts = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return parse_iso(value.strip())
    return assume_utc(ts)


def list_space(list_id: str | None) -> str:
    """Space of a message: its List-Id (``<label.namespace>``), else ``mbox``."""
    if not list_id:
        return DEFAULT_SPACE
    m = _MSGID.search(list_id)
    space = "".join((m.group(1) if m else list_id).split()).lower()
    if not space:
        return DEFAULT_SPACE
    if "@" in space or len(space) > MAX_ID:
        return "mbox:" + _digest(space)[:24]
    return space


def _list_addresses(headers: Mapping[str, str]) -> set[str]:
    """The list's own addresses: List-Post mailto, X-BeenThere, the List-Id as an address."""
    out = set()
    for value in (headers.get("list-post"), headers.get("x-beenthere")):
        if value:
            for m in re.findall(r"(?:mailto:)?([^<>\s,]+@[^<>\s,?]+)", value):
                out.add(m.lower())
    list_id = headers.get("list-id")
    if list_id:
        m = _MSGID.search(list_id)
        label = (m.group(1) if m else list_id).strip().lower()
        out.add(label)  # compared below after turning the address's "@" into "."
    return out


class MailThreads:
    """Threading state of one import: remembered messages (bounded) and the mapping."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity or MAX_REMEMBERED
        # 12-byte digest of the Message-ID -> (author, root content id); insertion ordered
        self._seen: dict[bytes, tuple[str, str]] = {}
        self._authors: dict[str, str] = {}  # intern table: one string per author

    def _remember(self, key: bytes, author: str, root: str) -> None:
        seen = self._seen
        seen[key] = (self._authors.setdefault(author, author), root)
        if len(seen) > self.capacity:
            del seen[next(iter(seen))]  # the oldest message

    def events(self, headers: Mapping[str, str], ctx: ImportContext) -> list[RawEvent]:
        """Events of one message given its headers (lower-cased names -> text); records a
        skip (and returns no event) when the message is left out."""
        stats = ctx.stats
        mid = message_id(headers.get("message-id"))
        ts = parse_date(headers.get("date"))
        senders = addresses(headers.get("from"))
        if mid is None or ts is None or not senders:
            stats.skip("unparseable")
            return []
        auto = (headers.get("auto-submitted") or "").strip().lower()
        precedence = (headers.get("precedence") or "").strip().lower()
        if (auto and auto.split(";")[0].strip() != "no") or precedence in _BOT_PRECEDENCE:
            stats.skip("bot")
            return []
        cid = content_id(mid)
        key = bytes.fromhex(cid[5:])
        if key in self._seen:
            stats.skip("duplicate")
            return []
        actor, at = senders[0], iso(ts)
        space = list_space(headers.get("list-id"))
        refs = message_ids(headers.get("references"))
        in_reply_to = message_ids(headers.get("in-reply-to"))
        parent_mid = in_reply_to[0] if in_reply_to else (refs[-1] if refs else None)
        target: str | None = None
        root = cid
        parent: str | None = None
        if parent_mid is not None and parent_mid != mid:
            parent = content_id(parent_mid)
            known = self._seen.get(bytes.fromhex(parent[5:]))
            if known is not None:
                target, root = known
            else:
                root = content_id(refs[0]) if refs and refs[0] != mid else parent
        message = Message(PLATFORM, cid, root, at, space)
        if parent is None:
            out = [message.post(actor)]
        else:
            out = [message.reply(actor, parent_content_id=parent, target_actor_id=target)]
        self._remember(key, actor, root)
        lists = _list_addresses(headers)
        for rcpt in addresses(headers.get("to"), headers.get("cc")):
            if rcpt == actor or rcpt == target or rcpt in lists or rcpt.replace("@", ".") in lists:
                continue
            out.append(message.mention(f"{cid}:to:{_digest(rcpt)[:16]}", actor, rcpt))
        return out


# --------------------------------------------------------------------------------------------
# streaming the archive


def _mbox_files(source: Path) -> list[Path]:
    """The file itself, or every file below the directory (sorted, as Perceval walks them)."""
    if source.is_file():
        return [source]
    files: list[Path] = []
    for root, _, names in sorted(os.walk(source)):
        files.extend(Path(root) / n for n in sorted(names))
    return files


def _open(path: Path) -> IO[bytes]:
    """The archive's bytes, decompressing gzip / bzip2 (recognised by their magic bytes)."""
    fh = open_source(path)
    magic = fh.read(3)
    fh.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    if magic == b"BZh":
        return bz2.BZ2File(fh, mode="rb")
    return fh


def _is_blank(line: bytes) -> bool:
    return line in (b"\n", b"\r\n")


def _header_blocks(path: Path, ctx: ImportContext) -> Iterator[dict[str, str] | None]:
    """Headers (lower-cased name -> value, the last of a repeated header wins, as in Perceval)
    of each message; None for a block that is no mail (text before the first message, a
    message without headers or with an oversized header block)."""
    parser = BytesHeaderParser(policy=compat32)
    size = path.stat().st_size
    fh = _open(path)
    raw = getattr(fh, "fileobj", None) or getattr(fh, "_fp", None) or fh
    header: list[bytes] = []  # header lines of the current message
    header_bytes = 0
    in_header = started = garbage = False
    prev_blank = True
    n_read = reported = 0
    with fh:
        try:
            for line in fh:
                n_read += len(line)
                if prev_blank and line.startswith(b"From "):
                    if started:
                        yield _parse(parser, header, header_bytes)
                    elif garbage:
                        yield None  # text before the first message
                    started = in_header = True
                    header, header_bytes = [], 0
                elif in_header:
                    if _is_blank(line):
                        in_header = False
                    elif header_bytes <= _MAX_HEADER_BYTES:
                        header.append(line)
                        header_bytes += len(line)
                elif not started:
                    if n_read > _SNIFF_BYTES:
                        break
                    garbage = garbage or bool(line.strip())
                prev_blank = _is_blank(line)
                if n_read - reported >= PROGRESS_STEP:
                    done = _position(raw, n_read, size)
                    ctx.progress(done - reported)
                    reported = done
        except (EOFError, zlib.error, OSError):  # gzip.BadGzipFile is an OSError
            if not started:
                raise ImportFormatError(f"{path}: damaged or truncated archive") from None
            yield _parse(parser, header, header_bytes)
            ctx.stats.skip("truncated")
            return
    if not started:
        if n_read == 0:
            return  # an empty file: no messages
        raise ImportFormatError(
            f"{path}: no 'From ' separator line (in the first {_SNIFF_BYTES // 1024} KiB); "
            "not an mbox archive"
        )
    yield _parse(parser, header, header_bytes)
    ctx.progress(max(size - reported, 0))


def _position(raw: object, n_read: int, size: int) -> int:
    """Bytes of the source file consumed so far (compressed position when compressed)."""
    tell = getattr(raw, "tell", None)
    try:
        pos = int(tell()) if callable(tell) else n_read
    except (OSError, ValueError):
        pos = n_read
    return min(pos, size)


def _parse(parser: BytesHeaderParser, header: list[bytes], n_bytes: int) -> dict[str, str] | None:
    if not header or n_bytes > _MAX_HEADER_BYTES:
        return None
    items = parser.parsebytes(b"".join(header)).items()
    if not items:
        return None
    return {k.lower(): str(v) for k, v in items}
