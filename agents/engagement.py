"""Engagement agent: event-time windows per activity partition, flushed to ClickHouse.

Offsets are acknowledged only once everything before them is in ClickHouse (see
``pipeline.metrics.windows`` for why that makes a restart exact). A failing sink blocks this agent,
Faust's stream buffer fills and consumption pauses: memory stays bounded, nothing is acked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from agents.batching import EventBatcher
from agents.runtime import Runtime
from pipeline.contract.activity import BadActivityRecordError, decode_activity
from pipeline.metrics.windows import ClosedWindow, PartitionWindows
from pipeline.ops.gauges import refresh_engagement_gauges
from pipeline.sinks.facts import FactBatch

log = logging.getLogger("teilhabe.engagement")

BATCH_MESSAGES = 1000
#: A batch also ends at this many bytes of messages: memory stays bounded with envelopes.
BATCH_BYTES = 128 * 1024 * 1024
BATCH_WITHIN_S = 0.25
FAILURE_LOG_INTERVAL_S = 30.0
MAX_BACKOFF_S = 30.0
#: At most one refresh of the engagement gauges (three ClickHouse queries) per interval: a
#: backfill closes windows with nearly every flush; a skipped refresh is caught up by the tick.
GAUGE_REFRESH_INTERVAL_S = 1.0
#: The leader also refreshes them this often: the newest window gains the partials of the
#: partitions other workers flush after this one's.
ENGAGEMENT_GAUGE_PERIOD_S = 10.0

_event_type = itemgetter("event_type")


@dataclass
class PartitionState:
    """Windows of one partition plus the messages not yet safe to acknowledge."""

    windows: PartitionWindows
    pending: deque[Any] = field(default_factory=deque)
    source_seen_at: dict[int, float] = field(default_factory=dict)
    last_message_at: float = field(default_factory=time.monotonic)
    last_idle_step_at: float = field(default_factory=time.monotonic)
    dirty: bool = False


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
        self.lock = asyncio.Lock()
        self._last_failure_log = 0.0
        self._gauges_stale = False
        self._gauges_refreshed_at = 0.0
        self._gauges_generation = 0
        self._gauges_refreshing = False

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def state_for(self, partition: int) -> PartitionState:
        """The partition's state, restored from its last checkpoint on first use."""
        st = self.states.get(partition)
        if st is None:
            cp = await self._with_retry("load checkpoint", self.rt.sink.load_checkpoint, partition)
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
            st = self.states[partition] = PartitionState(windows)
            now = time.monotonic()
            st.source_seen_at = {src: now for src in windows.sources}
        return st

    async def process(self, batch: list[Any]) -> None:
        """Apply one batch of activity messages, then flush when due.

        Per event only the windows' bookkeeping runs in Python; the facts keep the decoded
        dicts (``FactBatch``) and the counters are added up per batch (one ``inc`` per label).
        """
        m = self.rt.metrics
        if batch:
            m.consumed(self.rt.settings.topic_activity, len(batch))
        by_type: Counter[str] = Counter()
        late = duplicates = 0
        async with self.lock:
            facts = self.facts
            for event in batch:
                msg = event.message
                fresh = msg.partition not in self.states
                st = await self.state_for(msg.partition)
                if fresh:
                    log.info(
                        "partition=%s first offset=%s resume_offset=%s",
                        msg.partition,
                        msg.offset,
                        st.windows.resume_offset,
                    )
                try:
                    doc = decode_activity(event.value)
                except BadActivityRecordError as exc:  # set aside, never a crash loop
                    await self._set_aside(event, str(exc))
                    doc = None
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
                by_type.update(map(_event_type, outcome.accepted))
                late += len(outcome.late)
                duplicates += outcome.duplicates
                self.closed.extend(closed)
            for event_type, n in by_type.items():
                m.events_in.labels(event_type).inc(n)
            if late:
                m.events_late.inc(late)
            if duplicates:
                m.events_duplicate.inc(duplicates)
            if self._flush_due():
                await self._flush()

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
        s = self.rt.settings
        now = time.monotonic()
        async with self.lock:
            if s.idle_close_mode != "end_of_input":  # there: event time and markers only
                for st in self.states.values():
                    self.closed.extend(self._idle_closes(st, now))
            self._update_gauges()
            if self.facts or self.closed or any(st.dirty for st in self.states.values()):
                if self._flush_due():
                    await self._flush()
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
        """Write rows, closed windows and checkpoints; then acknowledge what they cover."""
        facts, closed = self.facts, self.closed
        checkpoints = {p: st.windows.checkpoint() for p, st in self.states.items() if st.dirty}
        await self._with_retry("flush", self.rt.sink.flush, facts, closed, checkpoints)
        self.facts, self.closed = FactBatch(), []
        self.last_flush = time.monotonic()
        for p, cp in checkpoints.items():
            st = self.states[p]
            st.dirty = False
            st.windows.prune(cp)
            while st.pending and st.pending[0].message.offset < cp.offset:
                st.pending.popleft().ack()
        if closed:
            log.info(
                "flushed windows=%s rows=%s partitions=%s",
                len(closed),
                len(facts),
                sorted({c.partition for c in closed}),
            )
            self._gauges_stale = True
            await self._refresh_engagement_gauges()

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

    async def _with_retry(self, what: str, fn: Any, *args: Any) -> Any:
        """Run a sink call until it succeeds, backing off; log once per interval, not per try."""
        backoff = 0.5
        failures = 0
        while True:
            try:
                return await self._run(fn, *args)
            except Exception as exc:  # noqa: BLE001 - every sink failure is retried alike
                failures += 1
                self.rt.metrics.sink_failures.inc()
                self.rt.sink.reset()
                now = time.monotonic()
                if now - self._last_failure_log >= FAILURE_LOG_INTERVAL_S:
                    self._last_failure_log = now
                    log.error(
                        "clickhouse %s failing, retrying with backoff (no offsets committed) "
                        "failures=%s error=%s: %s",
                        what,
                        failures,
                        type(exc).__name__,
                        str(exc)[:300],
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Flush and forget partitions this worker no longer owns."""
        mine = {tp.partition for tp in revoked if tp.topic == self.rt.settings.topic_activity}
        if not mine:
            return
        async with self.lock:
            if self.facts or self.closed:
                await self._flush()
            for p in mine:
                self.states.pop(p, None)
        log.info("partitions revoked partitions=%s", sorted(mine))

    async def shutdown(self) -> None:
        """Final flush on a graceful stop (SIGTERM): what is closed reaches ClickHouse."""
        async with self.lock:
            if self.facts or self.closed or any(st.dirty for st in self.states.values()):
                await self._flush()
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

    rt.app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    rt.app.stop_hooks.append(("engagement flush", stage.shutdown))  # type: ignore[attr-defined]

    rt.app.engagement_stage = stage  # type: ignore[attr-defined]
    return stage
