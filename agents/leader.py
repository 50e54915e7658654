"""The leader: the one worker that refreshes the gauges read from ClickHouse and writes the
directory mirror.

Which worker: the one currently assigned partition 0 of the activity topic. Faust's own leader
election is disabled here (``topic_disable_leader=True``: no leader topic on the broker), and
none is needed: the group's assignor gives every activity partition to exactly one member per
generation, each worker knows its own assignment without asking anyone (no extra topic, lock or
table), and when a worker dies its partitions, and with partition 0 the role, move at the same
rebalance that moves its work. The partition always exists (a topic has at least one), so there
is a leader whenever the group has members.

What the leader does: it serves the snapshot families of ``pipeline.ops.snapshot`` and refreshes
them (facts, unanswered posts, headcount here; engagement and baseline in
``agents.engagement``); it writes ``directory_people`` on change (``pipeline.sinks.directory``).
Every other worker exports those families empty, so a Prometheus ``max`` over the workers (what
the alert rules and dashboards use: ``max by (unit) (...)``) gives the leader's value. ``sum``
is right too while exactly one worker leads; ``max`` stays right in the rare overlap of a
worker that lost partition 0 without noticing yet (stalled past the session timeout), so
queries should keep using ``max``. At a hand-over the families are empty for the moment between
the old leader's new assignment and the new leader's first refresh (taken at once).

During a rebalance the assignment is empty for a moment: the role stays as it was until a new
assignment says otherwise, so a leader that keeps partition 0 does not drop its families.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.ops.gauges import (
    refresh_fact_gauges,
    refresh_headcount_gauge,
    refresh_unanswered_by_space_gauge,
    refresh_unanswered_gauge,
)
from pipeline.ops.snapshot import FactGauges
from pipeline.sinks.directory import DirectorySync

if TYPE_CHECKING:
    from agents.runtime import Runtime

log = logging.getLogger("teilhabe.leader")

#: How often the leader compares the whole directory with the mirror besides the writes on
#: change (heals a write of an earlier leader that landed after this one read the mirror).
RECONCILE_INTERVAL_S = 3600.0
#: How often the directory's changes are written to the mirror.
DIRECTORY_SYNC_INTERVAL_S = 5.0


class Leadership:
    """Whether this worker leads: it holds partition 0 of ``topic`` (see the module docstring)."""

    def __init__(self, app: Any, topic: str, gauges: FactGauges) -> None:
        self.app = app
        self.topic = topic
        self.gauges = gauges
        self.leading = False
        self.generation = 0  # counts the takeovers: a new one refreshes everything at once
        gauges.serve(False)

    def _holds_partition_0(self) -> bool | None:
        """True or False from the current assignment; None while there is none."""
        consumer = getattr(self.app, "_consumer", None)
        assigned = consumer.assignment() if consumer is not None else set()
        if not assigned:
            return None
        return any(tp.topic == self.topic and tp.partition == 0 for tp in assigned)

    def check(self) -> bool:
        """Follow the assignment; True when this worker has just taken the role over."""
        holds = self._holds_partition_0()
        if holds is None or holds == self.leading:
            return False
        self.leading = holds
        self.gauges.serve(holds)
        if holds:
            self.generation += 1
        log.info(
            "leader: %s (partition 0 of %s)",
            "this worker refreshes the gauges from the facts and the directory mirror"
            if holds
            else "another worker took the gauges from the facts and the directory mirror over",
            self.topic,
        )
        return holds


class LeaderDuties:
    """The leader's periodic work besides the engagement gauges."""

    def __init__(self, rt: Runtime, leadership: Leadership, mirror: DirectorySync) -> None:
        self.rt = rt
        self.leadership = leadership
        self.mirror = mirror
        self._facts_lock = asyncio.Lock()
        self._mirror_lock = asyncio.Lock()
        self._reload = True
        self._reconciled_at = 0.0
        self._headcount_due = True
        self._tasks: set[asyncio.Task[None]] = set()

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def tick(self) -> None:
        """Follow the role; on a takeover refresh everything at once."""
        took_over = self.leadership.check()
        if not self.leadership.leading:
            self.mirror.forget()
            return
        if took_over:
            self._reload = self._headcount_due = True
            for job in (self.refresh_facts(), self.sync_directory()):
                task = asyncio.ensure_future(job)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _facts(self) -> None:
        s, sink, metrics = self.rt.settings, self.rt.sink, self.rt.metrics
        now_ms = int(time.time() * 1000)
        refresh_unanswered_gauge(
            sink.client,
            sink.database,
            metrics,
            s.response_target_h,
            s.unanswered_lookback_days,
            now_ms,
        )
        refresh_fact_gauges(sink.client, sink.database, metrics)
        refresh_headcount_gauge(sink.client, sink.database, metrics)
        refresh_unanswered_by_space_gauge(
            sink.client,
            sink.database,
            metrics,
            s.response_target_h,
            s.unanswered_lookback_days,
            now_ms,
        )

    async def refresh_facts(self) -> None:
        """Unanswered posts, the newest day's figures and the headcount (leader only)."""
        if not self.leadership.leading or self._facts_lock.locked():
            return
        async with self._facts_lock:
            try:
                await self._run(self._facts)
            except Exception as exc:  # noqa: BLE001 - gauges, retried at the next tick
                log.warning("gauges from the facts not refreshed error=%s", exc)

    async def sync_directory(self) -> None:
        """Write the directory's changes to the mirror (leader only), the whole directory
        compared after a takeover and every ``RECONCILE_INTERVAL_S``; then the headcount."""
        if not self.leadership.leading or getattr(self.rt.app, "in_recovery", False):
            return  # the table is complete only after its recovery
        async with self._mirror_lock:
            await self._sync_directory()

    async def _sync_directory(self) -> None:
        mirror, directory = self.mirror, self.rt.directory
        full = self._reload or time.monotonic() - self._reconciled_at >= RECONCILE_INTERVAL_S
        plan = None
        try:
            if full:
                await self._run(mirror.load)
                plan = mirror.plan_all(list(directory.items()))
            else:
                plan = mirror.plan_changes(directory.get)
            if plan:
                await self._run(mirror.write, plan)
                self._headcount_due = True
                log.info(
                    "directory mirrored upserts=%s deletes=%s full=%s",
                    len(plan.upserts),
                    len(plan.deletes),
                    full,
                )
            if full:
                self._reload, self._reconciled_at = False, time.monotonic()
        except Exception as exc:  # noqa: BLE001 - retried at the next tick
            log.warning("directory not mirrored to ClickHouse (retried) error=%s", exc)
            if plan is not None and not full:
                mirror.retry(plan)
            return
        if self._headcount_due:
            sink = self.rt.sink
            try:
                await self._run(
                    refresh_headcount_gauge, sink.client, sink.database, self.rt.metrics
                )
                self._headcount_due = False
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning("headcount gauge not refreshed error=%s", exc)


def register(rt: Runtime, mirror: DirectorySync) -> LeaderDuties:
    """The role's check and the leader's timers; ``rt.leadership`` for the engagement stage."""
    leadership = Leadership(rt.app, rt.settings.topic_activity, rt.metrics.fact_gauges)
    rt.leadership = leadership
    duties = LeaderDuties(rt, leadership, mirror)

    @rt.app.timer(interval=1.0)
    async def leader_tick() -> None:
        await duties.tick()

    @rt.app.timer(interval=rt.settings.fact_gauges_interval_s)
    async def fact_gauges() -> None:
        await duties.refresh_facts()

    @rt.app.timer(interval=DIRECTORY_SYNC_INTERVAL_S)
    async def directory_mirror() -> None:
        await duties.sync_directory()

    return duties
