"""Event-time tumbling windows per partition, closed by a watermark the pipeline keeps itself.

Why not Faust's windowed tables: they expire windows by wall clock and skip close callbacks
for late keys (docs/design.md). Here every step is a deterministic function of the partition's
message sequence, which is what makes crash recovery exact:

* A partition of the activity topic merges the streams of several upstream sources (the
  ingest tasks of the input partitions), each in its own order and at its own pace. As in
  Flink, the watermark is the *minimum* over the sources of the largest event time each has
  sent (never decreasing), so a source that lags behind does not make its events late. A
  window ``[start, start + window)`` closes once ``start + window + grace <= watermark``; the
  check runs after every message, so closing does not depend on how messages were batched.
* A source quiet for a while (wall clock) is set aside (``mark_idle``) so it does not hold the
  watermark back; its next message brings it back. Like the idle close, that decision is not
  replayable, so what it closes is recorded through close offsets.
* An idle partition's watermark advances with the wall clock (``advance_idle``) so the last
  window closes without new data. That step is not replayable, so every close is recorded
  with its ``close_offset`` (the first offset *not* included).
* A ``Checkpoint`` = (offset L, watermark and sources before L, closes at offsets > L). Every event
  before L belongs to a window already closed and flushed, so the worker skips offsets < L
  after a restart and replays from L with the checkpointed watermark: open windows are
  rebuilt exactly, events of windows recorded as closed are recognised as already counted
  (offset < close_offset) or late (offset >= close_offset). Any saved checkpoint is
  self-consistent, so an older one only costs a longer replay.
* A bounded input (backfill, import) ends each source with an end-of-input marker
  (``end_source``): the source is set aside like an idle one, and once every source has
  ended, every open window closes. Unlike the wall-clock steps this is part of the message
  sequence, so a replay repeats it exactly: a backfill does not depend on timing at all.
* Distinct actors are exact because the activity topic is partitioned by actor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NO_WATERMARK = -(2**62)


@dataclass(slots=True)
class UnitWindow:
    """One unit's figures in one window (of one partition)."""

    events_by_type: Counter[str] = field(default_factory=Counter)
    actors: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Clock:
    """Watermark state: the watermark and each source's largest event time, idle ones apart."""

    watermark_ms: int = NO_WATERMARK
    sources: tuple[tuple[int, int], ...] = ()
    idle: frozenset[int] = frozenset()


@dataclass(slots=True)
class OpenWindow:
    """State of a window that still accepts events."""

    start_ms: int
    first_offset: int
    clock_before: Clock
    units: dict[str, UnitWindow] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window's final figures for one partition: what goes to ClickHouse."""

    partition: int
    start_ms: int
    window_ms: int
    close_offset: int
    units: dict[str, UnitWindow]

    def rows(self) -> Iterable[tuple[str, int, dict[str, int]]]:
        """``(unit, distinct active actors, events by type)`` per unit."""
        for unit, agg in sorted(self.units.items()):
            yield unit, len(agg.actors), dict(agg.events_by_type)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Recovery point of one partition (see module docstring)."""

    offset: int
    clock: Clock
    closes: dict[int, int]  # window start (ms) -> close_offset, only those > offset

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (window starts as strings: JSON object keys)."""
        return {
            "offset": self.offset,
            "watermark_ms": self.clock.watermark_ms,
            "sources": {str(k): v for k, v in self.clock.sources},
            "idle": sorted(self.clock.idle),
            "closes": {str(k): v for k, v in self.closes.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Checkpoint:
        """Inverse of ``to_json``."""
        clock = Clock(
            int(doc["watermark_ms"]),
            tuple(sorted((int(k), int(v)) for k, v in doc.get("sources", {}).items())),
            frozenset(int(i) for i in doc.get("idle", [])),
        )
        return cls(
            int(doc["offset"]), clock, {int(k): int(v) for k, v in doc.get("closes", {}).items()}
        )


@dataclass(slots=True)
class Outcome:
    """What one message did: counts for metrics, late events for the facts."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    replayed: int = 0
    skipped_message: bool = False


class PartitionWindows:
    """Windowed engagement state of one partition of the activity topic.

    >>> pw = PartitionWindows(partition=0, window_ms=60_000, grace_ms=0)
    >>> _ = pw.add(0, [{"event_id": "a", "ts": 1_000, "actor_id": "x",
    ...                 "actor_unit": "IT", "event_type": "post_created"}])
    >>> closed = pw.add(1, [{"event_id": "b", "ts": 61_000, "actor_id": "y",
    ...                      "actor_unit": "IT", "event_type": "view"}])[1]
    >>> [(c.start_ms, list(c.rows())) for c in closed]
    [(0, [('IT', 1, {'post_created': 1})])]
    """

    def __init__(
        self,
        partition: int,
        window_ms: int,
        grace_ms: int,
        checkpoint: Checkpoint | None = None,
        sources: int = 1,
    ) -> None:
        self.partition = partition
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.open: dict[int, OpenWindow] = {}
        if checkpoint is None:
            # every upstream source counts from the start: the watermark waits for all of
            # them (or for the quiet ones to be marked idle), as a slow one may come late
            checkpoint = Checkpoint(
                0, Clock(sources=tuple((i, NO_WATERMARK) for i in range(sources))), {}
            )
        self.resume_offset = checkpoint.offset
        self.watermark_ms = checkpoint.clock.watermark_ms
        self.sources: dict[int, int] = dict(checkpoint.clock.sources)
        self.idle: set[int] = set(checkpoint.clock.idle)
        self.closes: dict[int, int] = dict(checkpoint.closes)
        self.next_offset = checkpoint.offset

    def clock(self) -> Clock:
        """Snapshot of the watermark state (what a replay must start from)."""
        return Clock(self.watermark_ms, tuple(sorted(self.sources.items())), frozenset(self.idle))

    def _recompute_watermark(self) -> None:
        active = [ts for src, ts in self.sources.items() if src not in self.idle]
        if active:
            self.watermark_ms = max(self.watermark_ms, min(active))

    # -- processing -------------------------------------------------------------------------
    def add(
        self, offset: int, events: list[dict[str, Any]], source: int = 0
    ) -> tuple[Outcome, list[ClosedWindow]]:
        """Apply one message's events from upstream ``source``; return its outcome and the
        windows it closed."""
        out = Outcome()
        if offset < self.resume_offset:
            out.skipped_message = True  # counted before the checkpoint: replay of a crash
            return out, []
        window_ms, grace_ms, wm = self.window_ms, self.grace_ms, self.watermark_ms
        clock_before: Clock | None = None
        max_ts = self.sources.get(source, NO_WATERMARK)
        for ev in events:
            ts = ev["ts"]
            if ts > max_ts:
                max_ts = ts  # every event tells how far its source has got, late or not
            start = ts - ts % window_ms
            close_offset = self.closes.get(start)
            if close_offset is not None:
                if offset < close_offset:
                    out.replayed += 1
                else:
                    out.late.append(ev)
                continue
            win = self.open.get(start)
            if win is None:
                if start + window_ms + grace_ms <= wm:
                    out.late.append(ev)
                    continue
                if clock_before is None:
                    clock_before = self.clock()
                win = self.open[start] = OpenWindow(start, offset, clock_before)
            eid = ev["event_id"]
            if eid in win.event_ids:
                out.duplicates += 1
                continue
            win.event_ids.add(eid)
            unit = win.units.get(ev["actor_unit"])
            if unit is None:
                unit = win.units[ev["actor_unit"]] = UnitWindow()
            unit.events_by_type[ev["event_type"]] += 1
            unit.actors.add(ev["actor_id"])
            out.accepted.append(ev)
        self.next_offset = offset + 1
        self.sources[source] = max_ts
        self.idle.discard(source)
        self._recompute_watermark()
        return out, self._close_ready()

    def skip(self, offset: int) -> None:
        """Pass over the message at ``offset`` (one that could not be applied): it changes
        nothing but the position, so a replay passes over it the same way."""
        if offset >= self.resume_offset:
            self.next_offset = offset + 1

    def end_source(self, offset: int, source: int) -> tuple[Outcome, list[ClosedWindow]]:
        """Apply an end-of-input marker of ``source`` (message at ``offset``).

        The source stops holding the watermark back (its next events bring it back, late
        ones counted as late); when every known source has ended, all open windows close.
        """
        out = Outcome()
        if offset < self.resume_offset:
            out.skipped_message = True
            return out, []
        self.next_offset = offset + 1
        self.sources.setdefault(source, NO_WATERMARK)
        self.idle.add(source)
        if self.idle.issuperset(self.sources):
            if self.open:
                last_end = max(self.open) + self.window_ms + self.grace_ms
                self.watermark_ms = max(self.watermark_ms, last_end)
        else:
            self._recompute_watermark()
        return out, self._close_ready()

    def mark_idle(self, source: int) -> list[ClosedWindow]:
        """Set a quiet source aside (wall-clock decision of the worker, not replayed)."""
        if source in self.idle:
            return []
        self.sources.setdefault(source, NO_WATERMARK)
        self.idle.add(source)
        self._recompute_watermark()
        return self._close_ready()

    def advance_idle(self, idle_ms: int, close_all: bool = False) -> list[ClosedWindow]:
        """Advance the watermark by ``idle_ms`` of wall-clock idleness; close what is due.

        ``close_all`` (end of a backfill) moves the watermark past every open window.
        """
        if not self.open:
            return []
        if self.watermark_ms == NO_WATERMARK:
            self.watermark_ms = min(self.open)  # sources all idle before any got ahead
        if close_all:
            last_end = max(self.open) + self.window_ms + self.grace_ms
            self.watermark_ms = max(self.watermark_ms, last_end)
        else:
            self.watermark_ms += idle_ms
        return self._close_ready()

    def _close_ready(self) -> list[ClosedWindow]:
        due = [s for s in self.open if s + self.window_ms + self.grace_ms <= self.watermark_ms]
        closed = []
        for start in sorted(due):
            win = self.open.pop(start)
            self.closes[start] = self.next_offset
            closed.append(
                ClosedWindow(self.partition, start, self.window_ms, self.next_offset, win.units)
            )
        return closed

    # -- recovery ---------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The recovery point to save once all closed windows are flushed to the sink."""
        if self.open:
            oldest = min(self.open.values(), key=lambda w: w.first_offset)
            offset, clock = oldest.first_offset, oldest.clock_before
        else:
            offset, clock = self.next_offset, self.clock()
        return Checkpoint(offset, clock, {s: c for s, c in self.closes.items() if c > offset})

    def prune(self, committed: Checkpoint) -> None:
        """Forget close records the saved checkpoint no longer needs (bounded memory)."""
        self.closes = {s: c for s, c in self.closes.items() if c > committed.offset}

    def open_event_count(self) -> int:
        """Events held in open windows (for memory gauges)."""
        return sum(len(w.event_ids) for w in self.open.values())
