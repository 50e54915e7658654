"""The gauges from the facts as a consistent snapshot: a scrape during a refresh sees each family
either as before or as after it, never cleared or half set; a worker that does not lead exports
them empty.

The readings are replaced by fakes with two data sets (A, B); the expected scrapes are those of a
refresh with nobody looking. Two ways of scraping during a refresh: after every line the refresh
runs (a trace function: deterministic, catches clear-then-set at any point), and a thread
scraping in a loop while the main thread refreshes (with a tiny thread switch interval).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from pipeline.ops import gauges
from pipeline.ops.exporter import PipelineMetrics
from tests.unit.fake_readings import FakeReadings, data, refreshes

Scrape = dict[str, frozenset[tuple[tuple[tuple[str, str], ...], float]]]

#: The families each refresh owns (published together).
GROUPS = {
    "engagement": (
        "teilhabe_engagement_active_users",
        "teilhabe_engagement_events",
        "teilhabe_engagement_window_start_timestamp_seconds",
        "teilhabe_engagement_baseline_ratio",
        "teilhabe_engagement_baseline_events",
    ),
    "unanswered": ("teilhabe_unanswered_posts",),
    "unanswered_space": ("teilhabe_unanswered_posts_by_space",),
    "facts": (
        "teilhabe_ei_index",
        "teilhabe_cross_silo_share",
        "teilhabe_participation_people",
        "teilhabe_ideation",
        "teilhabe_facts_day_timestamp_seconds",
        "teilhabe_space_active_users",
        "teilhabe_platform_active_users",
    ),
    "headcount": ("teilhabe_directory_headcount",),
}


def scrape(m: PipelineMetrics) -> Scrape:
    """Every sample of the fact families, by family."""
    names = {n for group in GROUPS.values() for n in group}
    out: dict[str, set[tuple[tuple[tuple[str, str], ...], float]]] = {n: set() for n in names}
    for family in m.registry.collect():
        if family.name in names:
            for s in family.samples:
                out[family.name].add((tuple(sorted(s.labels.items())), s.value))
    return {n: frozenset(v) for n, v in out.items()}


def group(s: Scrape, name: str) -> tuple[frozenset[Any], ...]:
    return tuple(s[f] for f in GROUPS[name])


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReadings]:
    f = FakeReadings()
    f.install(monkeypatch)
    yield f


def expected_scrapes(fake: FakeReadings) -> dict[str, Scrape]:
    """What a scrape shows after A's and after B's refreshes, nobody scraping in between."""
    out = {}
    for tag in ("A", "B"):
        m = PipelineMetrics.create()
        fake.now = data(tag)
        for refresh in refreshes(m).values():
            refresh()
        out[tag] = scrape(m)
    for name in GROUPS:
        if name in refreshes(PipelineMetrics.create()):
            assert group(out["A"], name) != group(out["B"], name), f"{name}: A and B alike"
            assert all(group(out["A"], name)), f"{name}: a family of A is empty"
    return out


def test_a_scrape_after_any_line_of_a_refresh_sees_the_old_or_the_new_families(
    fake: FakeReadings,
) -> None:
    want = expected_scrapes(fake)
    m = PipelineMetrics.create()
    fake.now = data("A")
    for refresh in refreshes(m).values():
        refresh()
    assert scrape(m) == want["A"]
    seen: list[Scrape] = []
    gauges_file = gauges.__file__

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != gauges_file:
            return None
        if event == "line":
            sys.settrace(None)
            try:
                seen.append(scrape(m))
            finally:
                sys.settrace(tracer)
        return tracer

    fake.now = data("B")
    for name, refresh in refreshes(m).items():
        before = len(seen)
        sys.settrace(tracer)
        try:
            refresh()
        finally:
            sys.settrace(None)
        assert len(seen) - before >= 3, f"{name}: the trace did not see the refresh run"
        for s in seen[before:]:
            assert group(s, name) in (group(want["A"], name), group(want["B"], name)), (
                f"a scrape during the {name} refresh saw a cleared or half-set family"
            )
    assert scrape(m) == want["B"]


def test_a_thread_scraping_in_a_loop_sees_only_complete_families(fake: FakeReadings) -> None:
    want = expected_scrapes(fake)
    m = PipelineMetrics.create()
    fake.now = data("A")
    funcs = refreshes(m)
    for refresh in funcs.values():
        refresh()
    bad: list[str] = []
    scrapes = 0
    stop = threading.Event()

    def scraper() -> None:
        nonlocal scrapes
        while not stop.is_set():
            s = scrape(m)
            scrapes += 1
            for name in funcs:
                if group(s, name) not in (group(want["A"], name), group(want["B"], name)):
                    bad.append(name)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        for i in range(300):
            fake.now = data("AB"[i % 2])
            for refresh in funcs.values():
                refresh()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert scrapes > 0
    assert not bad, f"half-set families seen during {sorted(set(bad))} refreshes"


def test_a_worker_that_does_not_lead_exports_the_families_empty(fake: FakeReadings) -> None:
    m = PipelineMetrics.create()
    for refresh in refreshes(m).values():
        refresh()
    assert all(scrape(m).values())
    m.fact_gauges.serve(False)  # another worker leads now
    assert not any(scrape(m).values())
    names = {f.name for f in m.registry.collect()}
    assert {n for g in GROUPS.values() for n in g} <= names, "families stay, without samples"
    for refresh in refreshes(m).values():  # a refresh still in flight changes nothing
        refresh()
    assert not any(scrape(m).values())
    m.fact_gauges.serve(True)
    for refresh in refreshes(m).values():
        refresh()
    assert all(scrape(m).values())


def test_the_definitions_refuse_to_be_set_directly() -> None:
    m = PipelineMetrics.create()
    with pytest.raises(TypeError, match="snapshot"):
        m.active_users.labels("IT").set(3)
    with pytest.raises(TypeError, match="snapshot"):
        m.window_start.set(1)
