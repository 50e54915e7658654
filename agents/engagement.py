"""Engagement agent: event-time windows per activity partition, flushed to ClickHouse.

Offsets are acknowledged only once everything before them is in ClickHouse (see
``pipeline.metrics.windows`` for why that makes a restart exact). A failing sink blocks this agent,
Faust's stream buffer fills and consumption pauses: memory stays bounded, nothing is acked.

No lock is held across ClickHouse I/O (docs/reliability.md, "Rebalance during a ClickHouse
outage"): ``lock`` guards the state and is only taken for synchronous steps (apply a batch, take
a flush's snapshot, settle it); ``flush_lock`` keeps one flush at a time and is held while it is
written and retried. A flush writes a snapshot and then, under ``lock``, prunes and acknowledges
only the partitions whose state is still the one it snapshotted: a partition revoked meanwhile
is never acknowledged by this worker. So a revocation never waits for ClickHouse, and a
statement ClickHouse refuses for good stops the worker (``PermanentSinkError``) instead of
being retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from operator import itemgetter
from typing import Any, TypeVar

from agents.batching import EventBatcher
from agents.runtime import Runtime
from agents.sinkflush import BatchCounts, FlushSnapshot, PartitionState, SinkRetry
from pipeline.contract.activity import BadActivityRecordError, decode_activity
from pipeline.metrics.windows import Checkpoint, ClosedWindow, PartitionWindows
from pipeline.ops.gauges import refresh_engagement_gauges
from pipeline.sinks.clickhouse import PermanentSinkError
from pipeline.sinks.facts import FactBatch

log = logging.getLogger("teilhabe.engagement")

BATCH_MESSAGES = 1000
#: A batch also ends at this many bytes of messages: memory stays bounded with envelopes.
BATCH_BYTES = 128 * 1024 * 1024
BATCH_WITHIN_S = 0.25
#: At most one refresh of the engagement gauges (three ClickHouse queries) per interval: a
#: backfill closes windows with nearly every flush; a skipped refresh is caught up by the tick.
GAUGE_REFRESH_INTERVAL_S = 1.0
#: The leader also refreshes them this often: the newest window gains the partials of the
#: partitions other workers flush after this one's.
ENGAGEMENT_GAUGE_PERIOD_S = 10.0

_event_type = itemgetter("event_type")
T = TypeVar("T")


class EngagementStage:
    """Holds the state and the flush protocol; the Faust agent only feeds it messages."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self.window_ms = s.window_s * 1000
        self.grace_ms = s.grace_s * 1000
        self.states: dict[int, PartitionState] = {}
        self.facts = FactBatch()
        self.closed: list[ClosedWindow] = []
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()  # the state: synchronous steps only, never across I/O
        self.flush_lock = asyncio.Lock()  # one flush at a time, held while it is retried
        self.failed: PermanentSinkError | None = None  # set once: nothing is acked after it
        self._retry = SinkRetry(rt.metrics, rt.sink)
        self._gauges_stale = False
        self._gauges_refreshed_at = 0.0
        self._gauges_generation = 0
        self._gauges_refreshing = False

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def _current(self, msg: Any) -> bool:
        """False for a message fetched under an assignment that has ended since: Faust's own
        rule (``Stream``: flow suspended by a rebalance, or another consumer generation).
        Such a message is neither applied nor acknowledged; the partition's owner reads it."""
        app = getattr(self.rt, "app", None)
        if app is None:
            return True
        flow = getattr(app, "flow_control", None)
        if flow is not None and not flow.is_active():
            return False
        generation = getattr(msg, "generation_id", None)
        return generation is None or generation == app.consumer_generation_id

    async def _load_checkpoint(self, partition: int) -> Checkpoint | None:
        sink = self.rt.sink
        return await self._with_retry(
            "checkpoint load", lambda: self._run(sink.load_checkpoint, partition)
        )

    def _new_state(
        self, partition: int, cp: Checkpoint | None, first_offset: int
    ) -> PartitionState:
        sources = self.rt.settings.events_partitions
        windows = PartitionWindows(partition, self.window_ms, self.grace_ms, cp, sources)
        if cp is not None:
            log.info(
                "restored partition=%s resume_offset=%s watermark_ms=%s closes=%s",
                partition,
                cp.offset,
                cp.clock.watermark_ms,
                len(cp.closes),
            )
        log.info(
            "partition=%s first offset=%s resume_offset=%s",
            partition,
            first_offset,
            windows.resume_offset,
        )
        st = self.states[partition] = PartitionState(windows)
        now = time.monotonic()
        st.source_seen_at = {src: now for src in windows.sources}
        return st

    async def process(self, batch: list[Any]) -> None:
        """Apply one batch of activity messages, then flush when due.

        Per event only the windows' bookkeeping runs in Python; the facts keep the decoded
        dicts (``FactBatch``) and the counters are added up per batch (one ``inc`` per label).
        Decoding, dead letters and checkpoint loads happen outside the state lock; applying
        happens under it without awaiting anything.
        """
        if self.failed is not None:
            return  # the worker is stopping: nothing more is applied or acknowledged
        if batch:
            self.rt.metrics.consumed(self.rt.settings.topic_activity, len(batch))
        docs: list[dict[str, Any] | None] = []
        for event in batch:
            try:
                docs.append(decode_activity(event.value))
            except BadActivityRecordError as exc:  # set aside, never a crash loop
                docs.append(None)
                if self._current(event.message):
                    await self._set_aside(event, str(exc))
        counts = BatchCounts()
        loaded: dict[int, Checkpoint | None] = {}
        pos = 0
        try:
            while True:
                async with self.lock:
                    pos, missing = self._apply(batch, docs, pos, loaded, counts)
                if missing is None:
                    break
                loaded[missing] = await self._load_checkpoint(missing)
            counts.publish(self.rt.metrics)
            if self._flush_due():
                await self._flush()
        except PermanentSinkError as exc:
            await self._fail(exc)

    def _apply(
        self,
        batch: list[Any],
        docs: list[dict[str, Any] | None],
        pos: int,
        loaded: dict[int, Checkpoint | None],
        counts: BatchCounts,
    ) -> tuple[int, int | None]:
        """Apply ``batch[pos:]`` (synchronously, under ``lock``); stop at the first current
        message of a partition without state and no loaded checkpoint: (its index, partition)."""
        facts = self.facts
        for i in range(pos, len(batch)):
            event, doc = batch[i], docs[i]
            msg = event.message
            if not self._current(msg):
                continue  # not applied, not acknowledged: read again by the owner
            st = self.states.get(msg.partition)
            if st is None:
                if msg.partition not in loaded:
                    return i, msg.partition
                st = self._new_state(msg.partition, loaded.pop(msg.partition), msg.offset)
            event.value = msg.value = None  # the state keeps what it needs
            st.pending.append(event)
            st.dirty = True
            if doc is None:
                st.windows.skip(msg.offset)
                continue
            source = doc["src"]
            if doc.get("end"):
                outcome, closed = st.windows.end_source(msg.offset, source)
                if closed:
                    log.info(
                        "end of input partition=%s source=%s closed=%s",
                        msg.partition,
                        source,
                        len(closed),
                    )
            else:
                outcome, closed = st.windows.add(msg.offset, doc["events"], source)
            st.last_message_at = st.last_idle_step_at = time.monotonic()
            st.source_seen_at[source] = st.last_message_at
            if outcome.skipped_message:
                continue
            facts.add(outcome.accepted, outcome.late)
            counts.by_type.update(map(_event_type, outcome.accepted))
            counts.late += len(outcome.late)
            counts.duplicates += outcome.duplicates
            self.closed.extend(closed)
        return len(batch), None

    async def _set_aside(self, event: Any, reason: str) -> None:
        """Dead-letter an activity record the stage cannot apply (reason
        ``bad_activity_record``); its offset is then passed over like any other."""
        msg = event.message
        where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        log.error("activity record set aside source=%s reason=%s", where, reason)
        self.rt.metrics.events_invalid.labels("bad_activity_record").inc()
        dead = self.rt.delivery.dead_letter(
            "bad_activity_record", reason, event.value or b"", where
        )
        await self.rt.delivery.deliver([dead])

    def _flush_due(self) -> bool:
        s = self.rt.settings
        return (
            bool(self.closed)
            or len(self.facts) >= s.sink_batch_rows
            or time.monotonic() - self.last_flush >= s.sink_flush_interval_s
        )

    async def tick(self) -> None:
        """Wall-clock duties: close windows of idle partitions, flush on interval, gauges."""
        if self.failed is not None:
            return
        s = self.rt.settings
        now = time.monotonic()
        async with self.lock:
            if s.idle_close_mode != "end_of_input":  # there: event time and markers only
                for st in self.states.values():
                    self.closed.extend(self._idle_closes(st, now))
            self._update_gauges()
            due = (
                bool(self.facts or self.closed or any(st.dirty for st in self.states.values()))
                and self._flush_due()
            )
        if due and not self.flush_lock.locked():  # one in flight (or retrying) will do
            try:
                await self._flush()
            except PermanentSinkError as exc:
                await self._fail(exc)
                return
        await self._refresh_engagement_gauges()  # reads ClickHouse only: the batches go on

    def _idle_closes(self, st: PartitionState, now: float) -> list[ClosedWindow]:
        """Windows a partition closes by wall-clock idleness (recorded via close offsets).

        Live: a source quiet for idle_close_s stops holding the watermark back (its next
        message brings it back). With ``flush_all`` a quiet source is one still catching up,
        and only the whole partition's idleness (the input has ended) closes everything.
        """
        s = self.rt.settings
        closed: list[ClosedWindow] = []
        if s.idle_close_mode == "wall_clock":
            for source, seen_at in st.source_seen_at.items():
                if now - seen_at >= s.idle_close_s and source not in st.windows.idle:
                    closed += st.windows.mark_idle(source)
        if now - st.last_message_at >= s.idle_close_s:
            step_ms = int((now - st.last_idle_step_at) * 1000)
            st.last_idle_step_at = now
            closed += st.windows.advance_idle(step_ms, close_all=s.idle_close_mode == "flush_all")
        if closed:
            st.dirty = True
        return closed

    def _update_gauges(self) -> None:
        m = self.rt.metrics
        wall_ms = time.time() * 1000
        open_events = 0
        for p, st in self.states.items():
            wm = st.windows.watermark_ms
            if wm > 0:
                m.watermark.labels(str(p)).set(wm / 1000)
                m.event_time_lag.labels(str(p)).set(max(0.0, (wall_ms - wm) / 1000))
            open_events += st.windows.open_event_count()
        m.open_window_events.set(open_events)

    async def _flush(self) -> None:
        """Write rows, closed windows and checkpoints; then acknowledge what they cover.

        Snapshot under ``lock``, write and retry without it (new messages keep being applied
        to the state, revocations go through), settle under ``lock``. A snapshot that does not
        reach ClickHouse (cancelled, or refused for good) goes back into the state."""
        async with self.flush_lock:
            async with self.lock:
                snap = self._take_snapshot()
            if snap is None:
                return
            try:
                written = await self._with_retry("flush", lambda: self._write(snap))
            except BaseException:
                self._give_back(snap)
                raise
            async with self.lock:
                self._settle(snap, written)
        if snap.closed:
            log.info(
                "flushed windows=%s rows=%s partitions=%s",
                len(snap.closed),
                len(snap.facts),
                sorted({c.partition for c in snap.closed}),
            )
            self._gauges_stale = True
            await self._refresh_engagement_gauges()

    def _take_snapshot(self) -> FlushSnapshot | None:
        dirty = {p: st for p, st in self.states.items() if st.dirty}
        if not (self.facts or self.closed or dirty):
            self.last_flush = time.monotonic()
            return None
        snap = FlushSnapshot(
            self.facts,
            self.closed,
            dict(self.states),
            {p: st.windows.checkpoint() for p, st in dirty.items()},
        )
        for st in dirty.values():
            st.dirty = False
        self.facts, self.closed = FactBatch(), []
        return snap

    def _owned(self, snap: FlushSnapshot, partition: int) -> bool:
        """The partition's state is still the one the snapshot was taken from."""
        st = snap.owners.get(partition)
        return st is not None and self.states.get(partition) is st

    async def _write(self, snap: FlushSnapshot) -> dict[int, Checkpoint]:
        """One attempt: the snapshot minus the windows and checkpoints of partitions revoked
        since it was taken (their new owner replays them from its checkpoint); returns the
        checkpoints written."""
        closed = [c for c in snap.closed if self._owned(snap, c.partition)]
        cps = {p: cp for p, cp in snap.checkpoints.items() if self._owned(snap, p)}
        await self._run(self.rt.sink.flush, snap.facts, closed, cps)
        return cps

    def _settle(self, snap: FlushSnapshot, written: dict[int, Checkpoint]) -> None:
        """Prune and acknowledge what the written checkpoints cover, for partitions still
        owned as at the snapshot (a revoked partition is never acknowledged here)."""
        self.last_flush = time.monotonic()
        for p, cp in written.items():
            if not self._owned(snap, p):
                continue
            st = snap.owners[p]
            st.windows.prune(cp)
            while st.pending and st.pending[0].message.offset < cp.offset:
                st.pending.popleft().ack()

    def _give_back(self, snap: FlushSnapshot) -> None:
        """Put an unwritten snapshot back in front of what came since (synchronous: also
        safe from a cancelled flush)."""
        facts = FactBatch()
        facts.add(snap.facts.on_time, snap.facts.late)
        facts.add(self.facts.on_time, self.facts.late)
        self.facts = facts
        kept = [c for c in snap.closed if self._owned(snap, c.partition)]
        self.closed = kept + self.closed
        for p in snap.checkpoints:
            if self._owned(snap, p):
                snap.owners[p].dirty = True

    async def _refresh_engagement_gauges(self) -> None:
        """Gauges of the newest closed window, refreshed by the leader only (``agents.leader``;
        a stage without one refreshes them itself): once windows closed here, every
        ``ENGAGEMENT_GAUGE_PERIOD_S`` for the windows the other workers close, and at once when
        this worker takes the role over; at most once per ``GAUGE_REFRESH_INTERVAL_S``."""
        leadership = getattr(self.rt, "leadership", None)
        if leadership is not None and not leadership.leading:
            self._gauges_stale = False  # a takeover refreshes at once
            return
        now = time.monotonic()
        due = self._gauges_stale or (
            leadership is not None
            and (
                leadership.generation != self._gauges_generation
                or now - self._gauges_refreshed_at >= ENGAGEMENT_GAUGE_PERIOD_S
            )
        )
        if (
            not due
            or self._gauges_refreshing  # one at a time: an older one never publishes last
            or now - self._gauges_refreshed_at < GAUGE_REFRESH_INTERVAL_S
        ):
            return
        self._gauges_stale = False
        self._gauges_refreshed_at = now
        self._gauges_refreshing = True
        if leadership is not None:
            self._gauges_generation = leadership.generation
        try:
            sink = self.rt.sink
            await self._run(
                lambda: refresh_engagement_gauges(
                    sink.client, sink.database, sink.metrics, self.rt.settings.window_s
                )
            )
        except Exception as exc:  # noqa: BLE001 - gauges are best effort, facts are not
            log.warning("engagement gauges not refreshed error=%s", exc)
        finally:
            self._gauges_refreshing = False

    async def _with_retry(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        return await self._retry.call(what, attempt)

    async def _fail(self, exc: PermanentSinkError) -> None:
        """Stop the worker with a non-zero exit (``app.crash``: the worker re-raises the
        reason once stopped); from now on nothing is applied or acknowledged."""
        if self.failed is not None:
            return
        self.failed = exc
        log.critical("stopping the worker: %s", exc)
        app = getattr(self.rt, "app", None)
        if app is None:
            raise exc
        await app.crash(exc)

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Forget partitions this worker no longer owns: their open windows are dropped, not
        flushed (the new owner replays them exactly from the committed checkpoint), and their
        unacknowledged messages are never acknowledged here. Never waits for ClickHouse."""
        mine = {tp.partition for tp in revoked if tp.topic == self.rt.settings.topic_activity}
        if not mine:
            return
        started = time.monotonic()
        async with self.lock:
            dropped = [p for p in sorted(mine) if self.states.pop(p, None) is not None]
            self.closed = [c for c in self.closed if c.partition not in mine]
        log.info(
            "partitions revoked partitions=%s states_dropped=%s flush_in_flight=%s in %.3f s",
            sorted(mine),
            dropped,
            self.flush_lock.locked(),
            time.monotonic() - started,
        )

    def on_assigned(self, assigned: set[Any]) -> None:
        """Log the activity partitions of a completed assignment (tests and operators see a
        rebalance end here)."""
        mine = sorted(
            tp.partition for tp in assigned if tp.topic == self.rt.settings.topic_activity
        )
        log.info("partitions assigned partitions=%s", mine)

    async def shutdown(self) -> None:
        """Final flush on a graceful stop (SIGTERM): what is closed reaches ClickHouse."""
        if self.failed is not None:
            return  # stopping because ClickHouse refused a write: nothing to add
        if self.facts or self.closed or any(st.dirty for st in self.states.values()):
            try:
                await self._flush()
            except PermanentSinkError as exc:
                self.failed = exc
                log.critical("final flush refused, not retried: %s", exc)
                return
        self._gauges_refreshed_at = 0.0  # the last windows' figures, whatever the interval
        await self._refresh_engagement_gauges()


def register(rt: Runtime) -> EngagementStage:
    """Attach the engagement agent, its timer and its rebalance hook to the app."""
    stage = EngagementStage(rt)

    EventBatcher(stage.process, BATCH_MESSAGES, BATCH_WITHIN_S, BATCH_BYTES).attach(
        rt.app, rt.activity_topic, "teilhabe.engagement"
    )

    @rt.app.timer(interval=1.0)
    async def engagement_tick() -> None:
        await stage.tick()

    async def on_revoked(app: Any, revoked: set[Any], **kwargs: Any) -> None:
        await stage.on_revoked(revoked)

    async def on_assigned(app: Any, assigned: set[Any], **kwargs: Any) -> None:
        stage.on_assigned(assigned)

    rt.app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    rt.app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]
    rt.app.stop_hooks.append(("engagement flush", stage.shutdown))  # type: ignore[attr-defined]

    rt.app.engagement_stage = stage  # type: ignore[attr-defined]
    return stage
