"""Prometheus metrics: bounded labels, no person ids, k-suppression of headcounts."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from pipeline.contract.events import EVENT_TYPES
from pipeline.ops.exporter import CLIENT_COMPONENTS, INVALID_REASONS, TOP_SPACES, PipelineMetrics
from tests.unit.fake_readings import FakeReadings, data, refreshes

FACT_PREFIXES = (
    "teilhabe_engagement_",
    "teilhabe_unanswered",
    "teilhabe_ei_index",
    "teilhabe_cross_silo",
    "teilhabe_participation",
    "teilhabe_ideation",
    "teilhabe_facts_day",
    "teilhabe_space_active",
    "teilhabe_platform_active",
    "teilhabe_directory_headcount",
)


def test_headcount_below_k_is_not_exported() -> None:
    m = PipelineMetrics.create()
    m.set_headcounts({"IT": 12, "Tiny": 2}, min_group_size=5)
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "IT"}) == 12
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "Tiny"}) is None
    m.set_headcounts({"Tiny": 6}, min_group_size=5)  # a fresh snapshot replaces the old one
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "IT"}) is None


def test_every_label_of_every_sample_is_bounded_and_carries_no_person(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Labels are checked on what the registry yields after the metrics were set as the worker
    sets them: the counters by the agents, the gauges from the facts by their refreshes (with
    data), so a refresh that put a person id (or anything unbounded) into a label fails here."""
    m = PipelineMetrics.create()
    text = generate_latest(m.registry).decode()
    for reason in INVALID_REASONS:  # every reason exists from the start, at 0
        assert f'teilhabe_events_invalid_total{{reason="{reason}"}} 0.0' in text
    people = {f"{i:032x}" for i in range(50)}  # pseudonyms as the facts hold them
    topics = {"teilhabe.events", "teilhabe.activity", "teilhabe.deadletter"}
    m.consumed("teilhabe.events", 3)
    m.events_in.labels("view").inc()
    m.events_invalid.labels("not_json").inc()
    m.watermark.labels("0").set(1.0)
    m.event_time_lag.labels("0").set(1.0)
    m.consumer_lag.labels("teilhabe.activity", "1").set(0)
    m.sink_rows.labels("events").inc(3)
    m.sink_flush_seconds.observe(0.2)
    m.kafka_refused.labels("teilhabe.deadletter").inc()
    fake = FakeReadings()
    fake.install(monkeypatch)
    seen: set[str] = set()
    for tag in ("A", "B"):  # every refresh, with data, twice
        fake.now = data(tag)
        for refresh in refreshes(m).values():
            refresh()
        seen |= _check_every_label(m, fake.now, people, topics)
    assert len(seen) >= 14, f"the refreshes set too few families: {sorted(seen)}"


def _check_every_label(
    m: PipelineMetrics, now: dict[str, Any], people: set[str], topics: set[str]
) -> set[str]:
    """Check each label of each sample against its bounded set; the fact families seen."""
    units = {unit for unit, *_ in now["figures"].ei} | set(now["window"].units)
    spaces = {space for space, *_ in now["figures"].spaces}
    allowed: dict[str, set[str]] = {
        "unit": units | {unit for unit, _ in now["headcount"]},
        "event_type": set(EVENT_TYPES),
        "reason": set(INVALID_REASONS) | {"bad_activity_record"},
        "partition": {str(p) for p in range(64)},
        "topic": topics,
        "table": {"events", "engagement_window_partials", "stream_checkpoints"},
        "le": {repr(b) for b in (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)}
        | {repr(float(b)) for b in (1, 2.5, 5, 10, 30)}
        | {"+Inf"},
        "component": set(CLIENT_COMPONENTS.values()),
        "tier": {"observers", "contributors", "heavy_contributors"},
        "kind": {"ideas", "votes", "comments"},
        "space": spaces,
        "platform": {"chat", "wiki"},
    }
    fact_families: set[str] = set()
    for family in m.registry.collect():
        for sample in family.samples:
            for name, value in sample.labels.items():
                assert name in allowed, f"{sample.name}: unbounded label {name}"
                assert value in allowed[name], f"{sample.name}: {name}={value!r} not bounded"
                assert value not in people, f"{sample.name}: a person in {name}"
            if family.name.startswith(FACT_PREFIXES):
                fact_families.add(family.name)
    assert len(spaces) <= TOP_SPACES
    return fact_families


def test_client_problems_count_kafka_and_faust_warnings_only() -> None:
    import logging

    m = PipelineMetrics.create()
    handler = m.count_client_problems()
    for name, level in [
        ("aiokafka.consumer.group_coordinator", logging.WARNING),
        ("kafka.conn", logging.ERROR),
        ("faust.transport", logging.ERROR),
        ("aiokafka.conn", logging.INFO),  # below WARNING: not a problem
        ("teilhabe.ingest", logging.WARNING),  # our own warnings have their own metrics
        ("urllib3", logging.ERROR),
    ]:
        record = logging.LogRecord(name, level, __file__, 1, "msg", None, None)
        if record.levelno >= handler.level:
            handler.handle(record)
    get = m.registry.get_sample_value
    assert get("teilhabe_client_problems_total", {"component": "kafka"}) == 2
    assert get("teilhabe_client_problems_total", {"component": "faust"}) == 1
    values = {
        s.labels["component"]
        for metric in m.registry.collect()
        for s in metric.samples
        if "component" in s.labels
    }
    assert values == {"kafka", "faust"}, "component is a closed set"
