"""Event-time windows against a plain batch oracle, incl. out-of-order, late and duplicate
events, and against a crash at any point followed by a replay from the checkpoint."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.metrics.windows import Checkpoint, Clock, ClosedWindow, PartitionWindows

WINDOW_MS = 1000
UNITS = ["A", "B", "C"]
TYPES = ["post_created", "view", "reply_created"]


#: (upstream source, events | None = idle marker | "end" = end-of-input marker)
Message = tuple[int, list[dict[str, Any]] | str | None]


def oracle(
    messages: list[Message], grace_ms: int, n_sources: int = 1
) -> dict[tuple[int, str], tuple[int, dict[str, int]]]:
    """Plain recomputation: windows per (start, unit) -> (distinct actors, events by type).

    The watermark after a message is the largest value so far of "the smallest of the
    sources' largest event times" (None until every source has sent an event). An event is
    late when the watermark before its message has passed its window's end plus grace; the
    first on-time copy of an event_id counts, later ones not.
    """
    seen: set[str] = set()
    actors: dict[tuple[int, str], set[str]] = defaultdict(set)
    types: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    source_max: dict[int, int | None] = dict.fromkeys(range(n_sources))
    idle: set[int] = set()
    wm: int | None = None
    for source, message in messages:
        if message is None or message == "end":  # the source no longer holds the wm back
            idle.add(source)
            events: list[dict[str, Any]] = []
        else:
            assert isinstance(message, list)
            idle.discard(source)
            events = message
        if message == "end" and idle.issuperset(source_max):
            # every source has ended: the watermark passes the last window still open
            ends = [s + WINDOW_MS + grace_ms for s, _ in actors]
            still_open = [e for e in ends if wm is None or e > wm]
            if still_open:
                wm = max(still_open) if wm is None else max(wm, max(still_open))
            continue
        for ev in events:
            start = ev["ts"] // WINDOW_MS * WINDOW_MS
            if wm is not None and start + WINDOW_MS + grace_ms <= wm:
                continue  # late
            if ev["event_id"] in seen:
                continue
            seen.add(ev["event_id"])
            actors[(start, ev["actor_unit"])].add(ev["actor_id"])
            types[(start, ev["actor_unit"])][ev["event_type"]] += 1
        for ev in events:
            prev = source_max[source]
            source_max[source] = ev["ts"] if prev is None else max(prev, ev["ts"])
        maxes = [m for src, m in source_max.items() if src not in idle]
        if maxes and all(m is not None for m in maxes):
            low = min(m for m in maxes if m is not None)
            wm = low if wm is None else max(wm, low)
    return {k: (len(actors[k]), dict(types[k])) for k in actors}


def as_dict(closed: list[ClosedWindow]) -> dict[tuple[int, str], tuple[int, dict[str, int]]]:
    out: dict[tuple[int, str], tuple[int, dict[str, int]]] = {}
    for c in closed:
        for unit, active, by_type in c.rows():
            key = (c.start_ms, unit)
            assert key not in out or out[key] == (active, by_type), "rewrite must be identical"
            out[key] = (active, by_type)
    return out


pool_event = st.builds(
    lambda ts, a, u, t: {"ts": ts, "actor_id": f"p{a}", "actor_unit": u, "event_type": t},
    st.integers(0, 8 * WINDOW_MS),
    st.integers(0, 9),
    st.sampled_from(UNITS),
    st.sampled_from(TYPES),
)


@st.composite
def streams(draw: st.DrawFn, n_sources: int = 1) -> list[Message]:
    """Messages of events drawn from a pool (a re-delivery is an identical copy), each from
    one of ``n_sources`` upstream sources."""
    pool = draw(st.lists(pool_event, min_size=1, max_size=60))
    pool = [{**e, "event_id": f"e{i}"} for i, e in enumerate(pool)]
    events = st.lists(st.sampled_from(pool), max_size=6)
    marker = st.sampled_from([None, None, "end"])
    message = st.tuples(st.integers(0, n_sources - 1), st.one_of(events, events, events, marker))
    return draw(st.lists(message, min_size=1, max_size=40))


def run(messages: list[Message], pw: PartitionWindows, first: int = 0) -> list[ClosedWindow]:
    closed: list[ClosedWindow] = []
    for offset in range(first, len(messages)):
        closed += apply(pw, offset, messages[offset])
    return closed


def apply(pw: PartitionWindows, offset: int, message: Message) -> list[ClosedWindow]:
    source, events = message
    if events is None:  # the worker's wall-clock decision that the source is quiet
        return pw.mark_idle(source)
    if events == "end":  # an end-of-input marker: part of the message sequence
        return pw.end_source(offset, source)[1]
    assert isinstance(events, list)
    return pw.add(offset, [dict(e) for e in events], source)[1]


GRACES = st.sampled_from([0, 300, 2000])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3).flatmap(lambda n: st.tuples(st.just(n), streams(n))), GRACES)
def test_windows_equal_oracle(case: tuple[int, list[Message]], grace_ms: int) -> None:
    n_sources, messages = case
    pw = PartitionWindows(0, WINDOW_MS, grace_ms, sources=n_sources)
    closed = run(messages, pw)
    closed += pw.advance_idle(0, close_all=True)
    assert as_dict(closed) == oracle(messages, grace_ms, n_sources)
    assert not pw.open


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3).flatmap(lambda n: st.tuples(st.just(n), streams(n))), GRACES, st.data())
def test_crash_and_replay_from_checkpoint_is_exact(
    case: tuple[int, list[Message]], grace_ms: int, data: st.DataObject
) -> None:
    """Process a prefix, 'flush' at a random point, crash later, restart from the checkpoint
    (optionally replaying from an older committed offset): every window row ever written is
    identical to the oracle, none missing."""
    n_sources, messages = case
    # idle decisions are wall-clock, not replayed: this test covers message replay only
    # (end-of-input markers are messages and stay)
    messages = [(src, events if events is not None else []) for src, events in messages]
    n = len(messages)
    flush_at = data.draw(st.integers(0, n), label="flush_at")
    crash_at = data.draw(st.integers(flush_at, n), label="crash_at")
    pw = PartitionWindows(0, WINDOW_MS, grace_ms, sources=n_sources)
    written: list[ClosedWindow] = []
    pending: list[ClosedWindow] = []
    checkpoint = None
    for offset in range(crash_at):
        pending += apply(pw, offset, messages[offset])
        if offset + 1 == flush_at:
            written += pending
            pending = []
            checkpoint = pw.checkpoint()
            pw.prune(checkpoint)
    # crash: `pending` was never flushed. A restart reads the checkpoint; Kafka may hand
    # out messages from an older committed offset (any offset <= checkpoint.offset).
    replay_from = data.draw(st.integers(0, checkpoint.offset if checkpoint else 0), label="from")
    pw2 = PartitionWindows(0, WINDOW_MS, grace_ms, checkpoint, sources=n_sources)
    written += run(messages, pw2, first=replay_from)
    written += pw2.advance_idle(0, close_all=True)
    assert as_dict(written) == oracle(messages, grace_ms, n_sources)


def test_a_lagging_source_does_not_make_its_events_late() -> None:
    """Two ingest tasks feed one partition; task 1 is hours behind task 0 in event time."""

    def ev(i: str, ts: int) -> dict[str, Any]:
        return {"event_id": i, "ts": ts, "actor_id": i, "actor_unit": "A", "event_type": "view"}

    pw = PartitionWindows(0, WINDOW_MS, 0, sources=2)
    assert pw.add(0, [ev("a", 100), ev("b", 9000)], source=0)[1] == []  # source 1 unheard
    outcome, closed = pw.add(1, [ev("c", 200)], source=1)
    assert not outcome.late and closed == []  # watermark = min(9000, 200)
    outcome, closed = pw.add(2, [ev("d", 9500)], source=1)
    assert [c.start_ms for c in closed] == [0]
    assert list(closed[0].rows()) == [("A", 2, {"view": 2})]


def test_idle_source_is_set_aside_and_comes_back() -> None:
    def ev(i: str, ts: int) -> dict[str, Any]:
        return {"event_id": i, "ts": ts, "actor_id": i, "actor_unit": "A", "event_type": "view"}

    pw = PartitionWindows(0, WINDOW_MS, 0, sources=2)
    pw.add(0, [ev("a", 100)], source=0)
    pw.add(1, [ev("b", 5000)], source=0)
    assert pw.watermark_ms < 0  # source 1 has said nothing yet
    assert [c.start_ms for c in pw.mark_idle(1)] == [0]
    pw.add(3, [ev("c", 7000)], source=1)
    assert 1 not in pw.idle and pw.watermark_ms == 5000


def test_late_event_is_reported_not_counted() -> None:
    pw = PartitionWindows(0, WINDOW_MS, 0)
    ev = {"event_id": "a", "ts": 100, "actor_id": "x", "actor_unit": "A", "event_type": "view"}
    pw.add(0, [ev])
    _, closed = pw.add(1, [{**ev, "event_id": "b", "ts": 5000}])
    assert [c.start_ms for c in closed] == [0]
    outcome, _ = pw.add(2, [{**ev, "event_id": "c", "ts": 200}])
    assert [e["event_id"] for e in outcome.late] == ["c"]
    assert not outcome.accepted


def test_duplicate_in_open_window_counted_once() -> None:
    pw = PartitionWindows(0, WINDOW_MS, 0)
    ev = {"event_id": "a", "ts": 100, "actor_id": "x", "actor_unit": "A", "event_type": "view"}
    pw.add(0, [ev])
    outcome, _ = pw.add(1, [dict(ev)])
    assert outcome.duplicates == 1
    closed = pw.advance_idle(0, close_all=True)
    assert list(closed[0].rows()) == [("A", 1, {"view": 1})]


def test_idle_partition_closes_by_wall_clock() -> None:
    pw = PartitionWindows(0, WINDOW_MS, 500)
    pw.add(
        0, [{"event_id": "a", "ts": 100, "actor_id": "x", "actor_unit": "A", "event_type": "view"}]
    )
    assert pw.advance_idle(1000) == []  # watermark 1100 < 1000 + 500
    assert [c.start_ms for c in pw.advance_idle(400)] == [0]


def test_checkpoint_json_round_trip() -> None:
    cp = Checkpoint(17, Clock(123456, ((0, 123456), (1, 200000)), frozenset({2})), {1000: 20})
    assert Checkpoint.from_json(cp.to_json()) == cp


def test_replay_does_not_reopen_a_window_closed_after_the_checkpoint_offset() -> None:
    """W0 closes after W1 opened; the checkpoint offset is W1's first message. A replay from
    there must recognise W0's later events as already counted, not reopen W0 with a part."""

    def ev(i: str, ts: int) -> dict[str, Any]:
        return {"event_id": i, "ts": ts, "actor_id": i, "actor_unit": "A", "event_type": "view"}

    messages: list[Message] = [
        (0, [ev("a", 100)]),
        (0, [ev("b", 1100)]),
        (0, [ev("c", 200)]),
        (0, [ev("d", 2500)]),
    ]
    pw = PartitionWindows(0, WINDOW_MS, 1000)
    closed = run(messages, pw)
    assert [c.start_ms for c in closed] == [0]
    cp = pw.checkpoint()
    assert cp.offset == 1 and cp.closes == {0: 4}
    pw2 = PartitionWindows(0, WINDOW_MS, 1000, cp)
    replayed = run(messages, pw2, first=cp.offset)
    replayed += pw2.advance_idle(0, close_all=True)
    assert 0 not in [c.start_ms for c in replayed]
    assert as_dict(closed + replayed) == oracle(messages, 1000)


def test_end_of_input_on_every_source_closes_all_windows_exactly() -> None:
    """A bounded input ends with a marker per source: every window closes, none by time."""
    ev = [
        {"event_id": f"e{i}", "ts": ts, "actor_id": a, "actor_unit": "A", "event_type": "view"}
        for i, (ts, a) in enumerate([(100, "x"), (2500, "y"), (4100, "x"), (4200, "z")])
    ]
    pw = PartitionWindows(0, WINDOW_MS, grace_ms=10_000, sources=2)
    closed = pw.add(0, ev[:2], source=0)[1] + pw.add(1, ev[2:], source=1)[1]
    assert closed == [], "a grace of 10 s keeps every window open"
    closed += pw.end_source(2, source=0)[1]
    assert closed == [], "one source ended, the other may still send"
    closed += pw.end_source(3, source=1)[1]
    assert {(c.start_ms, c.close_offset) for c in closed} == {(0, 4), (2000, 4), (4000, 4)}
    assert as_dict(closed)[(4000, "A")] == (2, {"view": 2})
    late, _ = pw.add(4, [{**ev[0], "event_id": "new"}], source=0)
    assert [e["event_id"] for e in late.late] == ["new"], "after the end, old windows are closed"
