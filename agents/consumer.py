"""Faust's Kafka consumer with one defect fixed: fetched records are never silently dropped.

faust-streaming 0.15.3's ``Consumer.getmany`` stops handing out a fetched batch when the flow
is suspended, the group generation changes, or a partition is momentarily inactive, but
aiokafka's position has already moved past the whole batch and nothing seeks back. Those
records are then never processed. Seen here on the embedded broker: a worker starting on a
topic that already held data skipped offsets (and Faust's gap tracking let the commit pass
them), and the second of two workers starting together never processed two input
partitions (its read offset stayed unset while aiokafka's position stood at the high
watermark). This subclass seeks every partition back to its first record not handed out,
so the records are fetched again; a partition no longer assigned is left to its new owner,
which starts from the committed offset.

A seek back that fails stops the worker (``app.crash``, non-zero exit): the records it should
have fetched again would otherwise be missing, and Faust's gap tracking would let the commit
pass them as soon as a later record of the partition is acknowledged. Until the worker has
stopped, no further record of that partition is handed out, so nothing past them is acked;
the restarted worker reads from the committed offset (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from mode.utils.queues import FlowControlEvent

log = logging.getLogger("teilhabe.consumer")


class SeekBackError(RuntimeError):
    """A partition could not be sought back over records not handed out: the worker stops."""


class NoDropConsumer(AIOKafkaConsumer):
    """``getmany`` that seeks back over records it fetched but did not hand out, or whose
    hand-out Faust abandoned. Patched internals: ``agents.faust_patches``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._abandoned: dict[Any, int] = {}  # tp -> lowest offset whose delivery was cancelled
        self._unseekable: set[Any] = set()  # seek back failed: nothing more is handed out
        deliver = self.callback

        async def deliver_or_remember(message: Any) -> None:
            # Faust's drain loop races the delivery against ``suspend_flow`` and cancels the
            # loser, then marks the offset read all the same: remember it, fetch it again
            try:
                await deliver(message)
            except asyncio.CancelledError:
                tp, offset = message.tp, message.offset
                self._abandoned[tp] = min(offset, self._abandoned.get(tp, offset))
                raise

        self.callback = deliver_or_remember

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        if self._abandoned:
            abandoned, self._abandoned = self._abandoned, {}
            for tp, offset in abandoned.items():
                await self._seek_to(tp, offset, "delivery abandoned")
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if log.isEnabledFor(logging.DEBUG):
            self._trace_fetch(records, active_partitions)
        generation_id = self.app.consumer_generation_id
        undelivered: dict[Any, int] = {}  # tp -> first offset not handed out
        last: tuple[Any, int] | None = None  # handed out last: its delivery may be abandoned
        for tp, batch in records.items():
            if batch:
                undelivered[tp] = batch[0].offset
        try:
            if not self.flow_active:
                return  # the finally below seeks back over all of it
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    # Faust's drain loop gives up on a delivery when the flow is suspended
                    # and still marks it read: hand the last record out again
                    if last is not None:
                        undelivered[last[0]] = min(undelivered[last[0]], last[1])
                    break
                if tp in self._unseekable:
                    continue  # the worker is stopping: never a record past the failed seek
                if (
                    active_partitions is None
                    or tp in active_partitions
                    or tp in self._buffered_partitions
                ):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    undelivered[tp] = record.offset + 1
                    last = (tp, record.offset)
                    yield tp, self._to_message(tp, record)
        finally:
            self._report_lag(undelivered)
            await self._seek_back(records, undelivered)

    def _report_lag(self, next_offsets: dict[Any, int]) -> None:
        """Consumer lag per fetched partition: high watermark - next offset to hand out."""
        metrics = getattr(self.app, "pipeline_metrics", None)
        if metrics is None:
            return
        for tp, offset in next_offsets.items():
            try:
                hw = self.highwater(tp)
            except Exception:  # noqa: BLE001 - a gauge must never stop the fetcher
                continue
            if hw is not None and hw >= 0:
                metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - offset))

    def _trace_fetch(self, records: Any, active: Any) -> None:
        """DEBUG: what a fetch returned; every 5 s the fetch state of the assigned partitions."""
        got = {
            f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]": f"{b[0].offset}-{b[-1].offset}"
            for tp, b in records.items()
            if b
        }
        if got:
            log.debug("fetched %s", got)
        now = time.monotonic()
        if now - getattr(self, "_traced_at", 0.0) < 5.0:
            return
        self._traced_at = now
        state = []
        try:
            assignment = self._thread._ensure_consumer()._subscription.subscription.assignment
            for tp in sorted(self.assignment()):
                st = assignment.state_value(tp)
                state.append(
                    f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}] pos={st.position} "
                    f"hw={st.highwater} paused={st.paused} active={tp in (active or ())}"
                )
        except Exception as exc:  # noqa: BLE001 - tracing only
            state.append(repr(exc))
        log.debug("fetch state %s", "; ".join(state))

    async def _seek_back(self, records: Any, undelivered: dict[Any, int]) -> None:
        for tp, batch in records.items():
            if not batch or undelivered[tp] > batch[-1].offset:
                continue  # all of this partition's records were handed out
            await self._seek_to(tp, undelivered[tp], "fetched records not handed out")

    async def _seek_to(self, tp: Any, offset: int, why: str) -> None:
        if tp not in self.assignment() or tp in self._unseekable:
            return  # revoked: its new owner starts from the committed offset
        try:
            await self.seek(tp, offset)
        except Exception as exc:  # noqa: BLE001 - any failure: the records would be missing
            self._unseekable.add(tp)
            reason = SeekBackError(
                f"could not seek {tp.topic}[{tp.partition}] back to offset {offset} ({why}): "
                f"{exc!r}. Stopping the worker so that nothing past offset {offset} is "
                "committed; restart it (its supervisor does) and it reads the partition again "
                "from the committed offset"
            )
            log.critical("%s", reason)
            await self.app.crash(reason)
        else:
            log.info("%s: %s[%s] seeks back to %s", why, tp.topic, tp.partition, offset)


class KeepQueuesFlowControl(FlowControlEvent):
    """Faust's stream flow control, without dropping events when nothing was suspended.

    ``FlowControlEvent.resume`` clears every stream queue. That is meant for the end of a
    rebalance, when the queues hold events of the old assignment and the partitions have been
    sought back to their committed offsets. But Faust's table recovery resumes the flow
    *twice* at start (after reading the changelogs, then in ``_resume_streams`` after seeking
    the stream partitions), and in between the fetcher already hands out stream records.
    The second resume then cleared events that were delivered and marked read, so they were
    never processed (traced here: input offset 20 delivered to the agent's queue at the moment
    of "Worker ready", never seen by the agent; the commit then stalled at that offset, or
    Faust acknowledged it as skipped and an envelope was lost). Resuming flow that is not
    suspended now keeps the queues. Listed in ``agents.faust_patches``.
    """

    def resume(self) -> None:
        """Resume; clear the stream queues only when the flow was actually suspended."""
        if self.is_active():
            self._resume.set()
            return
        super().resume()
