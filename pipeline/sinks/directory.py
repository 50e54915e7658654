"""The directory mirror: who belongs to which unit, from the directory topic into
``directory_people`` (the denominator of ``daily_active_by_unit.adoption_rate``)."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.sinks.facts import ClickHouseSink


class DirectorySync:
    """Mirrors the directory (pseudonym -> unit, attributes) into ``directory_people``, the
    denominator of ``daily_active_by_unit.adoption_rate``; writes only what changed."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self._written: dict[str, tuple[str, str]] = {}

    def pending(self, entries: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
        """Rows (person_id, unit, attributes JSON) that differ from what was written."""
        out = []
        for person, entry in entries.items():
            attrs = orjson.dumps(
                {k: v for k, v in entry.items() if k != "unit"}, option=orjson.OPT_SORT_KEYS
            ).decode()
            row = (str(entry["unit"]), attrs)
            if self._written.get(person) != row:
                out.append((person, *row))
        return out

    def write(self, rows: list[tuple[str, str, str]]) -> None:
        """Insert the rows (raises on failure; nothing is marked written then)."""
        if rows:
            self.sink.client.insert(
                f"{self.sink.database}.directory_people",
                rows,
                column_names=("person_id", "unit", "attributes"),
            )
        for person, unit, attrs in rows:
            self._written[person] = (unit, attrs)
