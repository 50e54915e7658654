"""Event-time windows against a plain batch oracle, incl. out-of-order, late and duplicate
events, and against a crash at any point followed by a replay from the checkpoint."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.windows import Checkpoint, ClosedWindow, PartitionWindows

WINDOW_MS = 1000
UNITS = ["A", "B", "C"]
TYPES = ["post_created", "view", "reply_created"]


def oracle(
    messages: list[list[dict[str, Any]]], grace_ms: int
) -> dict[tuple[int, str], tuple[int, dict[str, int]]]:
    """Plain recomputation: windows per (start, unit) -> (distinct actors, events by type).

    An event is late when the largest event time of all *earlier messages* already passed
    its window's end plus grace; the first on-time copy of an event_id counts, later ones not.
    """
    seen: set[str] = set()
    actors: dict[tuple[int, str], set[str]] = defaultdict(set)
    types: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    wm = None
    for events in messages:
        for ev in events:
            start = ev["ts"] // WINDOW_MS * WINDOW_MS
            if wm is not None and start + WINDOW_MS + grace_ms <= wm:
                continue  # late
            if ev["event_id"] in seen:
                continue
            seen.add(ev["event_id"])
            actors[(start, ev["actor_unit"])].add(ev["actor_id"])
            types[(start, ev["actor_unit"])][ev["event_type"]] += 1
        ts = [ev["ts"] for ev in events]
        if ts:
            wm = max(ts) if wm is None else max(wm, max(ts))
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
def streams(draw: st.DrawFn) -> list[list[dict[str, Any]]]:
    """Messages of events drawn from a pool: a re-delivery is an identical copy."""
    pool = draw(st.lists(pool_event, min_size=1, max_size=60))
    pool = [{**e, "event_id": f"e{i}"} for i, e in enumerate(pool)]
    picks = st.lists(st.sampled_from(pool), max_size=6)
    return draw(st.lists(picks, min_size=1, max_size=40))


def run(
    messages: list[list[dict[str, Any]]], grace_ms: int, pw: PartitionWindows, first: int = 0
) -> list[ClosedWindow]:
    closed: list[ClosedWindow] = []
    for offset in range(first, len(messages)):
        closed += pw.add(offset, [dict(e) for e in messages[offset]])[1]
    return closed


@settings(max_examples=300, deadline=None)
@given(streams(), st.sampled_from([0, 300, 2000]))
def test_windows_equal_oracle(messages: list[list[dict[str, Any]]], grace_ms: int) -> None:
    pw = PartitionWindows(0, WINDOW_MS, grace_ms)
    closed = run(messages, grace_ms, pw)
    closed += pw.advance_idle(0, close_all=True)
    assert as_dict(closed) == oracle(messages, grace_ms)
    assert not pw.open


@settings(max_examples=300, deadline=None)
@given(streams(), st.sampled_from([0, 300, 2000]), st.data())
def test_crash_and_replay_from_checkpoint_is_exact(
    messages: list[list[dict[str, Any]]], grace_ms: int, data: st.DataObject
) -> None:
    """Process a prefix, 'flush' at a random point, crash later, restart from the checkpoint
    (optionally replaying from an older committed offset): every window row ever written is
    identical to the oracle, none missing."""
    n = len(messages)
    flush_at = data.draw(st.integers(0, n), label="flush_at")
    crash_at = data.draw(st.integers(flush_at, n), label="crash_at")
    pw = PartitionWindows(0, WINDOW_MS, grace_ms)
    written: list[ClosedWindow] = []
    pending: list[ClosedWindow] = []
    checkpoint = None
    for offset in range(crash_at):
        pending += pw.add(offset, [dict(e) for e in messages[offset]])[1]
        if offset + 1 == flush_at:
            written += pending
            pending = []
            checkpoint = pw.checkpoint()
            pw.prune(checkpoint)
    # crash: `pending` was never flushed. A restart reads the checkpoint; Kafka may hand
    # out messages from an older committed offset (any offset <= checkpoint.offset).
    cp = checkpoint or Checkpoint(0, PartitionWindows(0, 1, 0).watermark_ms, {})
    replay_from = data.draw(st.integers(0, cp.offset), label="replay_from")
    pw2 = PartitionWindows(0, WINDOW_MS, grace_ms, cp)
    written += run(messages, grace_ms, pw2, first=replay_from)
    written += pw2.advance_idle(0, close_all=True)
    assert as_dict(written) == oracle(messages, grace_ms)


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
    cp = Checkpoint(17, 123456, {1000: 20, 2000: 25})
    assert Checkpoint.from_json(cp.to_json()) == cp


def test_replay_does_not_reopen_a_window_closed_after_the_checkpoint_offset() -> None:
    """W0 closes after W1 opened; the checkpoint offset is W1's first message. A replay from
    there must recognise W0's later events as already counted, not reopen W0 with a part."""

    def ev(i: str, ts: int) -> dict[str, Any]:
        return {"event_id": i, "ts": ts, "actor_id": i, "actor_unit": "A", "event_type": "view"}

    messages = [[ev("a", 100)], [ev("b", 1100)], [ev("c", 200)], [ev("d", 2500)]]
    pw = PartitionWindows(0, WINDOW_MS, 1000)
    closed = run(messages, 1000, pw)
    assert [c.start_ms for c in closed] == [0]
    cp = pw.checkpoint()
    assert cp.offset == 1 and cp.closes == {0: 4}
    pw2 = PartitionWindows(0, WINDOW_MS, 1000, cp)
    replayed = run(messages, 1000, pw2, first=cp.offset)
    replayed += pw2.advance_idle(0, close_all=True)
    assert 0 not in [c.start_ms for c in replayed]
    assert as_dict(closed + replayed) == oracle(messages, 1000)
