"""What every connector shares: the import context, statistics and the format error."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import TeilhabeError

RawEvent = dict[str, Any]
"""A contract v1 event whose person ids are still the platform's own (user id, e-mail)."""


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
    first: datetime | None = None
    last: datetime | None = None

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` source records left out, by a short stable reason (``bot``, ...)."""
        self.skipped[reason] += n

    def emitted(self, event: RawEvent) -> None:
        """Count one event that leaves the reader (called by the importer)."""
        self.events[event["event_type"]] += 1
        ts = datetime.fromisoformat(event["occurred_at"])
        if self.first is None or ts < self.first:
            self.first = ts
        if self.last is None or ts > self.last:
            self.last = ts


@dataclass
class ImportContext:
    """Shared by a reader and the importer for one import run."""

    stats: ImportStats = field(default_factory=ImportStats)
    # raw person id -> profile attributes from the export itself ({"unit": department, ...});
    # the importer turns them into directory records (pseudonymised) and fills actor_unit
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    progress: Callable[[int], None] = lambda n: None  # bytes (or records) of the source read


Reader = Callable[[Path, ImportContext], Iterator[RawEvent]]


def iso(ts: datetime | float) -> str:
    """RFC 3339 UTC with microseconds and ``Z``, as the contract wants, from a datetime or
    Unix seconds (naive datetimes are taken as UTC)."""
    if not isinstance(ts, datetime):
        ts = datetime.fromtimestamp(ts, UTC)
    elif ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def source_files(source: Path) -> Path:
    """``source`` if it exists, else an ImportFormatError naming it."""
    if not source.exists():
        raise ImportFormatError(f"{source}: no such file or directory")
    return source
