"""Prometheus counters of the webhook endpoints; their labels are closed sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter

#: Every status the endpoint answers with (a closed set for the metric's label).
STATUSES: Final = ("200", "202", "400", "401", "404", "413", "429", "503")


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
                "Webhook requests answered, by source (events, slack, mattermost) and status",
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
