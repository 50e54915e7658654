"""What the agents of one worker process share: settings, topics, sink, directory, delivery.

Its own module so that the app (which builds it) and the agents (which use it) do not import
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust

from agents.delivery import Delivery
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.metrics.enrich import parse_directory_entry
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import Settings
from pipeline.sinks.facts import ClickHouseSink

if TYPE_CHECKING:
    from agents.leader import Leadership

DIRECTORY_CACHE_SIZE = 200_000  # parsed directory values kept (about one per person)


@dataclass
class Runtime:
    """What the agents share inside one worker process."""

    settings: Settings
    app: faust.App
    metrics: PipelineMetrics
    pseudonymise: Pseudonymiser
    sink: ClickHouseSink
    events_topic: faust.TopicT
    activity_topic: faust.TopicT
    deadletter_topic: faust.TopicT
    directory: Any  # faust GlobalTable: pseudonym -> {"unit": ..., "cohorts": [...]}
    delivery: Delivery  # every record the agents write goes through it (bounded, never a crash)

    parsed: dict[bytes, dict[str, Any] | None] = field(default_factory=dict)
    #: Whether this worker is the leader (``agents.leader``); None before the app registers it.
    leadership: Leadership | None = None

    def lookup(self, pseudonym: str) -> dict[str, Any] | None:
        """Directory entry of a person (by pseudonym), None when unknown or malformed.

        Parsed values are cached by the stored bytes (a changed record is other bytes, so it
        is parsed anew): events without a unit (mail, chat exports) ask for it per event.
        """
        # raw key serializer: keys are bytes
        raw = self.directory.get(pseudonym.encode())
        if raw is None:
            return None
        try:
            return self.parsed[raw]
        except KeyError:
            if len(self.parsed) >= DIRECTORY_CACHE_SIZE:
                self.parsed.clear()
            entry = self.parsed[raw] = parse_directory_entry(raw)
            return entry
        except TypeError:  # not bytes (never from the raw serializer): no cache
            return parse_directory_entry(raw)
