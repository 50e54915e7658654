"""TEILHABE_RAW_RETENTION_H: the raw topics (events, dead letters) are created with that
``retention.ms``, the others keep the broker's default; an existing raw topic kept longer is
reported, not altered. On the real embedded broker (Tansu), which reports topic configs through
DescribeConfigs (all configs, not only the modified ones)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.dev.broker import EmbeddedBroker
from pipeline.ops import topics
from pipeline.settings import Settings

pytestmark = pytest.mark.integration


def test_specs_carry_the_retention(make_settings: Callable[..., Settings]) -> None:
    settings: Settings = make_settings(raw_retention_h=1.5)
    specs = {t.name: t for t in topics.topic_specs(settings)}
    assert topics.raw_retention_ms(settings) == 5_400_000
    for name in (settings.topic_events, settings.topic_deadletter):
        assert specs[name].topic_configs == {"retention.ms": "5400000"}
    assert "retention.ms" not in specs[settings.topic_activity].topic_configs
    assert specs[settings.topic_directory].topic_configs == {"cleanup.policy": "compact"}
    default: Settings = make_settings()
    assert topics.raw_retention_ms(default) == 24 * 3_600_000


def test_created_with_retention_and_existing_longer_ones_reported(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings: Settings = make_settings(raw_retention_h=2)
    with EmbeddedBroker(tmp_path / "broker") as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            # the dead-letter topic exists already, kept for 30 days
            month = str(30 * 24 * 3_600_000)
            admin.create_topics(
                [NewTopic(settings.topic_deadletter, 1, 1, topic_configs={"retention.ms": month})]
            )
            with caplog.at_level(logging.WARNING, logger="teilhabe.topics"):
                topics.ensure_topics(broker.bootstrap, settings)
            names = [settings.topic_events, settings.topic_deadletter, settings.topic_activity]
            got = topics.retention_in_force(admin, names)
        finally:
            admin.close()
    assert got[settings.topic_events] == 7_200_000
    assert got[settings.topic_deadletter] == int(month), "an existing topic is not altered"
    assert got[settings.topic_activity] != 7_200_000
    warned = [
        r.getMessage() for r in caplog.records if "TEILHABE_RAW_RETENTION_H" in r.getMessage()
    ]
    assert len(warned) == 1 and settings.topic_deadletter in warned[0]
