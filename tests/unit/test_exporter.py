"""Prometheus metrics: bounded labels, no person ids, k-suppression of headcounts."""

from __future__ import annotations

from prometheus_client import generate_latest

from pipeline.ops.exporter import INVALID_REASONS, PipelineMetrics


def test_headcount_below_k_is_not_exported() -> None:
    m = PipelineMetrics.create()
    m.set_headcounts({"IT": 12, "Tiny": 2}, min_group_size=5)
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "IT"}) == 12
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "Tiny"}) is None
    m.set_headcounts({"Tiny": 6}, min_group_size=5)  # a fresh snapshot replaces the old one
    assert m.registry.get_sample_value("teilhabe_directory_headcount", {"unit": "IT"}) is None


def test_label_sets_are_bounded_and_carry_no_person() -> None:
    m = PipelineMetrics.create()
    text = generate_latest(m.registry).decode()
    for reason in INVALID_REASONS:  # every reason exists from the start, at 0
        assert f'teilhabe_events_invalid_total{{reason="{reason}"}} 0.0' in text
    labels = {
        name
        for metric in m.registry.collect()
        for sample in metric.samples
        for name in sample.labels
    }
    assert labels <= {
        "unit",
        "event_type",
        "reason",
        "partition",
        "topic",
        "table",
        "le",
        "component",
    }
    bounded = {"tier", "kind"}  # fixed sets, children created by refresh_fact_gauges
    assert set(m.participation._labelnames) <= {"unit"} | bounded
    assert set(m.ideation._labelnames) <= {"unit"} | bounded


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
