"""The pipeline's topics, created with their partitions and settings (compaction for the
directory) before any client writes: an auto-created topic would get neither.

Used by the worker at start, against the embedded broker and a real Kafka alike.
"""

from __future__ import annotations

import logging
import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.errors import BrokerError
from pipeline.ops.preflight import preflight, sasl_error
from pipeline.settings import Settings

log = logging.getLogger("teilhabe.topics")


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics Teilhabe uses, with partition counts and the directory compacted."""
    return [
        NewTopic(settings.topic_events, settings.events_partitions, 1),
        NewTopic(settings.topic_activity, settings.activity_partitions, 1),
        NewTopic(settings.topic_deadletter, 1, 1),
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
