"""What every connector shares: the import context, statistics and the format error; building
events (``event``, ``Message``), the contract's id limits, times, progress and exports that
come as a ZIP archive or a directory."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from pipeline.errors import TeilhabeError

RawEvent = dict[str, Any]
"""A contract v1 event whose person ids are still the platform's own (user id, e-mail)."""

#: The contract's longest id (event, content, space) and person id.
MAX_ID: Final = 200
MAX_PERSON: Final = 320
#: Bytes read between two progress reports of a streaming reader.
PROGRESS_STEP: Final = 1 << 20
#: What reading a damaged file or ZIP member raises (truncated, bad CRC, encrypted, I/O).
DAMAGED: Final = (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError)
PERSON_KEYS: Final = ("email", "id")


class ImportFormatError(TeilhabeError):
    """The source cannot be read as the format at all (not a ZIP, no users.json, ...).

    Raised only when nothing sensible can be read; a bad record inside a readable export is
    skipped with a reason instead (``ImportStats.skip``).
    """


@dataclass
class ImportStats:
    """What an import did: events by type, records skipped by reason, event-time range."""

    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None  # event time of the earliest event, epoch ms
    last_ms: int | None = None

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` source records left out, by a short stable reason (``bot``, ...)."""
        self.skipped[reason] += n

    def emitted(self, event_type: str, ts_ms: int) -> None:
        """Count one event that leaves the reader (the importer, which has parsed its time)."""
        self.events[event_type] += 1
        if self.first_ms is None or ts_ms < self.first_ms:
            self.first_ms = ts_ms
        if self.last_ms is None or ts_ms > self.last_ms:
            self.last_ms = ts_ms

    @property
    def first(self) -> datetime | None:
        """Time of the earliest event (UTC)."""
        return None if self.first_ms is None else datetime.fromtimestamp(self.first_ms / 1000, UTC)

    @property
    def last(self) -> datetime | None:
        """Time of the latest event (UTC)."""
        return None if self.last_ms is None else datetime.fromtimestamp(self.last_ms / 1000, UTC)


@dataclass
class ImportContext:
    """Shared by a reader and the importer for one import run."""

    stats: ImportStats = field(default_factory=ImportStats)
    # raw person id -> profile attributes from the export itself ({"unit": department, ...});
    # the importer turns them into directory records (pseudonymised) and fills actor_unit
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    progress: Callable[[int], None] = lambda n: None  # bytes (or records) of the source read


Reader = Callable[[Path, ImportContext], Iterator[RawEvent]]


# --------------------------------------------------------------------------------------------
# events


def assume_utc(ts: datetime) -> datetime:
    """``ts`` itself when it has a time zone, else the same wall time taken as UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def iso(ts: datetime | float) -> str:
    """RFC 3339 UTC with microseconds and ``Z``, as the contract wants, from a datetime or
    Unix seconds (naive datetimes are taken as UTC)."""
    if not isinstance(ts, datetime):
        ts = datetime.fromtimestamp(ts, UTC)
    return assume_utc(ts).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 time as an aware datetime (naive taken as UTC); None when ``value`` is not
    one (white space around it makes it none)."""
    if not isinstance(value, str):
        return None
    try:
        return assume_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def event(
    event_id: str,
    event_type: str,
    occurred_at: str,
    actor_id: str,
    *,
    platform: str,
    **fields: Any,
) -> RawEvent:
    """A contract v1 event; ``None`` fields are left out."""
    out: RawEvent = {
        "schema_version": 1,
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": occurred_at,
        "actor_id": actor_id,
        "platform": platform,
    }
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def fit_id(value: str, platform: str) -> str:
    """``value`` as an id within the contract's ``MAX_ID`` characters: itself, or when longer
    ``<platform>:h:`` and a hash of it."""
    if len(value) <= MAX_ID:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{platform}:h:{digest.hexdigest()}"


def short_hash(value: str) -> str:
    """12 hex characters standing for ``value`` in an id (an emoji name, ...)."""
    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


@dataclass(frozen=True)
class Message:
    """A post or reply as the events about it name it: its creation, the mentions in it and
    the reactions to it all carry these fields (the event id of the creation is the content
    id)."""

    platform: str
    content_id: str
    root_content_id: str
    occurred_at: str
    space_id: str | None = None

    def post(self, actor_id: str) -> RawEvent:
        """``post_created`` by ``actor_id``."""
        return self._event(self.content_id, "post_created", actor_id)

    def reply(
        self, actor_id: str, *, parent_content_id: str | None, target_actor_id: str | None
    ) -> RawEvent:
        """``reply_created`` by ``actor_id`` to ``parent_content_id`` (whose author, when known,
        is ``target_actor_id``)."""
        return self._event(
            self.content_id,
            "reply_created",
            actor_id,
            target_actor_id=target_actor_id,
            parent_content_id=parent_content_id,
        )

    def membership(self, event_type: str, actor_id: str) -> RawEvent:
        """``member_joined`` / ``member_left`` of ``actor_id`` in the message's space, which
        this (system) message tells of: no content fields."""
        return event(
            self.content_id,
            event_type,
            self.occurred_at,
            actor_id,
            platform=self.platform,
            space_id=self.space_id,
        )

    def mention(self, event_id: str, actor_id: str, target_actor_id: str) -> RawEvent:
        """``mention`` of ``target_actor_id`` by the message's author ``actor_id``."""
        return self._event(event_id, "mention", actor_id, target_actor_id=target_actor_id)

    def numbered_mentions(self, actor_id: str, targets: Iterable[str]) -> Iterator[RawEvent]:
        """A ``mention`` per target, in order, with the event id ``<content id>:mention:<n>``
        (n = 0, 1, ... over the targets given)."""
        for n, target in enumerate(targets):
            event_id = fit_id(f"{self.content_id}:mention:{n}", self.platform)
            yield self.mention(event_id, actor_id, target)

    def reaction(
        self,
        event_id: str,
        actor_id: str,
        author: str | None,
        occurred_at: str | None = None,
    ) -> RawEvent:
        """``reaction_added`` by ``actor_id`` towards the message's ``author`` (None: not a
        person), at ``occurred_at`` or, when the platform records no reaction time, the
        message's."""
        return self._event(
            event_id, "reaction_added", actor_id, target_actor_id=author, at=occurred_at
        )

    def _event(
        self,
        event_id: str,
        event_type: str,
        actor_id: str,
        *,
        target_actor_id: str | None = None,
        parent_content_id: str | None = None,
        at: str | None = None,
    ) -> RawEvent:
        return event(
            event_id,
            event_type,
            at or self.occurred_at,
            actor_id,
            platform=self.platform,
            space_id=self.space_id,
            target_actor_id=target_actor_id,
            content_id=self.content_id,
            parent_content_id=parent_content_id,
            root_content_id=self.root_content_id,
        )


# --------------------------------------------------------------------------------------------
# people


def check_person_key(person_key: str) -> None:
    """ValueError unless ``person_key`` is one of ``PERSON_KEYS`` (``email``, ``id``)."""
    if person_key not in PERSON_KEYS:
        raise ValueError(f"person_key must be 'email' or 'id', got {person_key!r}")


def email_key(value: object) -> str | None:
    """A profile's e-mail address as a person key (stripped, lower-cased); None when it has
    none."""
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    return None


# --------------------------------------------------------------------------------------------
# reading the source


def source_files(source: Path) -> Path:
    """``source`` if it exists, else an ImportFormatError naming it."""
    if not source.exists():
        raise ImportFormatError(f"{source}: no such file or directory")
    return source


def open_source(path: Path) -> IO[bytes]:
    """``path`` opened for reading bytes; an ImportFormatError with the reason when it cannot
    be."""
    try:
        return open(path, "rb")
    except OSError as exc:
        raise ImportFormatError(f"{path}: cannot be opened ({exc.strerror})") from None


class Progress:
    """Reports the bytes of the source a reader has got through to ``ctx.progress``, in steps
    of at least ``PROGRESS_STEP`` (not per record); a source read in ``passes`` passes reports
    that share of each step in each pass."""

    def __init__(self, report: Callable[[int], None], passes: int = 1) -> None:
        self.report = report
        self.passes = passes
        self.reported = 0  # the position up to which the bytes are reported

    def at(self, position: int) -> None:
        """The reader got to ``position``: reports when a step is complete."""
        if position - self.reported >= PROGRESS_STEP:
            self.report((position - self.reported) // self.passes)
            self.reported = position

    def end(self, position: int) -> None:
        """The reader got to the end, ``position``: reports the rest."""
        if position > self.reported:
            self.report((position - self.reported) // self.passes)
            self.reported = position


class ExportFiles:
    """An export given as a ZIP archive or as the directory it was unzipped to: its files by
    ``/``-separated name relative to the archive's top (the directory)."""

    def __init__(self, source: Path, expected: str) -> None:
        """Lists the files; an ImportFormatError naming what was ``expected`` when ``source``
        is a file but no readable ZIP archive."""
        self.source = source
        self._zip: zipfile.ZipFile | None = None
        self._infos: dict[str, zipfile.ZipInfo] = {}
        if source.is_dir():
            files = (p for p in sorted(source.rglob("*")) if p.is_file())
            self.names = [p.relative_to(source).as_posix() for p in files]
            return
        try:
            self._zip = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise ImportFormatError(
                f"{source}: not a readable ZIP archive ({type(exc).__name__}); expected {expected}"
            ) from None
        self._infos = {i.filename: i for i in self._zip.infolist() if not i.is_dir()}
        self.names = list(self._infos)

    def sizes(self, name: str) -> tuple[int, int]:
        """(bytes in the source, compressed in a ZIP; bytes uncompressed) of a file."""
        if self._zip is not None:
            info = self._infos[name]
            return info.compress_size, info.file_size
        n = (self.source / name).stat().st_size
        return n, n

    def open(self, name: str) -> IO[bytes]:
        """The file's bytes as a stream (``DAMAGED`` errors while reading a broken one)."""
        if self._zip is not None:
            return self._zip.open(self._infos[name])
        return open(self.source / name, "rb")

    def read(self, name: str, limit: int) -> bytes | None:
        """The whole file; None when it is larger than ``limit`` bytes (uncompressed)."""
        if self.sizes(name)[1] > limit:
            return None
        with self.open(name) as fh:
            data = fh.read(limit + 1)
        return None if len(data) > limit else data

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
