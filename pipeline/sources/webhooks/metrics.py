"""Prometheus counters of the webhook endpoints; their labels are closed sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter

#: Every status the endpoint answers with (a closed set for the metric's label; docs/metrics.md
#: lists it). 500 is a bug: every failure a client can cause has its 4xx.
STATUSES: Final = (
    "200", "202", "400", "401", "404", "405", "408", "413", "429", "500", "503"
)  # fmt: skip
#: The source label: a route's source, ``healthz``, or ``other`` (no route matched).
SOURCE_LABELS: Final = ("events", "slack", "mattermost", "healthz", "other")


@dataclass
class WebhookMetrics:
    """Counters of the endpoint; labels are closed sets (source, status, reason)."""

    requests: Counter
    events: Counter
    ignored: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebhookMetrics:
        """Register the counters in ``registry`` (the worker's)."""
        return cls(
            requests=Counter(
                "teilhabe_webhook_requests",
                "Webhook requests answered, by source (events, slack, mattermost, healthz, other) "
                "and status",
                ["source", "status"],
                registry=registry,
            ),
            events=Counter(
                "teilhabe_webhook_events",
                "Events received over webhooks and confirmed by Kafka, by source",
                ["source"],
                registry=registry,
            ),
            ignored=Counter(
                "teilhabe_webhook_ignored",
                "Valid webhook payloads that hold nothing to count (bot, edit, duplicate, ...)",
                ["source", "reason"],
                registry=registry,
            ),
        )
