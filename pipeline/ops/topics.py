"""The pipeline's topics, created with their partitions and settings (compaction for the
directory) before any client writes: an auto-created topic would get neither.

The events and dead-letter topics hold raw person ids: they are created with ``retention.ms``
from ``TEILHABE_RAW_RETENTION_H`` (docs/privacy.md, "Raw ids in Kafka kept short"). An existing
one whose retention is longer (or unlimited) is not altered, only reported with a warning: a
company's Kafka may keep the topic for other consumers, and altering needs a right the workers
should not need.

Used by the worker at start, against the embedded broker and a real Kafka alike.
"""

from __future__ import annotations

import logging
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.errors import BrokerError
from pipeline.ops.preflight import preflight, sasl_error
from pipeline.settings import Settings

log = logging.getLogger("teilhabe.topics")


def raw_retention_ms(settings: Settings) -> int:
    """``TEILHABE_RAW_RETENTION_H`` in milliseconds (at least 1)."""
    return max(1, round(settings.raw_retention_h * 3_600_000))


def raw_topics(settings: Settings) -> list[str]:
    """The topics that hold raw person ids (before the ingest agent pseudonymises them)."""
    return [settings.topic_events, settings.topic_deadletter]


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics Teilhabe uses, with partition counts, the directory compacted and the raw
    topics' retention short."""
    raw = {"retention.ms": str(raw_retention_ms(settings))}
    return [
        NewTopic(settings.topic_events, settings.events_partitions, 1, topic_configs=dict(raw)),
        NewTopic(settings.topic_activity, settings.activity_partitions, 1),
        NewTopic(settings.topic_deadletter, 1, 1, topic_configs=dict(raw)),
        NewTopic(settings.topic_directory, 1, 1, topic_configs={"cleanup.policy": "compact"}),
    ]


def ensure_topics(bootstrap: str, settings: Settings, timeout_s: float = 30.0) -> None:
    """Create missing topics before anyone produces (auto-created ones may mismatch); the
    Kafka preflight runs first (``pipeline.ops.preflight``)."""
    security = preflight(bootstrap, settings)  # TLS / SASL problems: a ConfigError now
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="teilhabe-admin",
                **security.client_kwargs(),
            )
            break
        except KafkaError as exc:
            config_error = sasl_error(bootstrap, security, exc)
            if config_error is not None:
                raise config_error from None
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        check_raw_retention(admin, settings, [t for t in raw_topics(settings) if t in existing])
        for spec in topic_specs(settings):
            if spec.name in existing:
                continue
            try:
                admin.create_topics([spec])
                log.info("created topic=%s partitions=%s", spec.name, spec.num_partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def retention_in_force(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int | None]:
    """topic -> ``retention.ms`` as the broker reports it (None: not reported; -1: unlimited)."""
    if not topics:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, t, configs=None) for t in topics]
    answer = admin.describe_configs(resources, config_filter="all")
    found = answer.get("topic", {}) if isinstance(answer, dict) else {}
    out: dict[str, int | None] = {}
    for topic in topics:
        value = (found.get(topic) or {}).get("retention.ms", {}).get("value")
        out[topic] = int(value) if value not in (None, "") else None
    return out


def check_raw_retention(
    admin: KafkaAdminClient, settings: Settings, topics: list[str]
) -> list[str]:
    """Warn for each existing raw topic kept longer than ``TEILHABE_RAW_RETENTION_H`` (never
    altered); returns the topics warned about."""
    limit = raw_retention_ms(settings)
    try:
        in_force = retention_in_force(admin, topics)
    except (KafkaError, ValueError, TypeError, AttributeError) as exc:  # e.g. no right: go on
        log.warning("cannot read the retention of %s: %s", ", ".join(topics), exc)
        return []
    longer = [t for t, ms in in_force.items() if ms is not None and (ms < 0 or ms > limit)]
    for topic in longer:
        ms = in_force[topic]
        log.warning(
            "topic %s keeps raw person ids for %s, longer than TEILHABE_RAW_RETENTION_H=%s h; "
            "not changed: set it with kafka-configs.sh --alter --entity-type topics "
            "--entity-name %s --add-config retention.ms=%d (docs/privacy.md)",
            topic,
            "ever" if ms is not None and ms < 0 else f"{ms} ms",
            settings.raw_retention_h,
            topic,
            limit,
        )
    return longer
