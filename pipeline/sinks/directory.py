"""The directory mirror: who belongs to which unit, from the directory topic into
``directory_people`` (the denominator of ``daily_active_by_unit.adoption_rate`` and the source of
the ``unit_headcount`` view and its gauge).

Written on change: the directory table reports the keys of every changelog batch it applies
(``note``) and ``plan_changes`` looks at those keys only. A key without a valid entry any more (a
tombstone on the compacted topic: a leaver; or a value that is no longer a valid entry) is
removed from the mirror with a lightweight ``DELETE``, so the existing views over
``directory_people FINAL`` leave leavers out without a schema change. ``plan_all`` compares the
whole directory with what ClickHouse holds (``load``): when a worker takes the mirror over (the
changes before were another worker's to write, and compaction may have dropped tombstones
nobody read) and now and then after that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.metrics.enrich import directory_entries, parse_directory_entry
from pipeline.sinks.facts import ClickHouseSink

#: What the mirror holds of a person: (unit, attributes JSON with sorted keys).
Row = tuple[str, str]


def mirror_row(entry: Mapping[str, Any]) -> Row:
    """A valid directory entry as the mirror stores it."""
    attrs = orjson.dumps(
        {k: v for k, v in entry.items() if k != "unit"}, option=orjson.OPT_SORT_KEYS
    )
    return str(entry["unit"]), attrs.decode()


def person_key(key: object) -> str | None:
    """A directory key as a person pseudonym; None when no event could name it (empty, not
    UTF-8), as ``pipeline.metrics.enrich.directory_entries`` leaves it out."""
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            return None
    return key if isinstance(key, str) and key else None


@dataclass
class Plan:
    """What one write does: rows to insert (new or changed people) and people to delete."""

    upserts: list[tuple[str, str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # the keys it covers (noted again if it fails)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes)


class DirectorySync:
    """Mirrors the directory (pseudonym -> unit, attributes) into ``directory_people``; writes
    only what changed. ``_written`` is what ClickHouse holds (None until ``load``)."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self._written: dict[str, Row] | None = None
        self._changed: set[str] = set()
        self.rows_inserted = 0
        self.rows_deleted = 0

    @property
    def loaded(self) -> bool:
        """True once the mirror's content was read (``load``)."""
        return self._written is not None

    def note(self, keys: Iterable[object]) -> None:
        """Directory keys whose record was set or deleted (the table's changelog batches)."""
        for key in keys:
            person = person_key(key)
            if person is not None:
                self._changed.add(person)

    def forget(self) -> None:
        """Drop noted changes and what was read (this worker does not write the mirror now; the
        next one to write starts with ``load`` and ``plan_all``)."""
        self._changed.clear()
        self._written = None

    def load(self) -> None:
        """Read what the mirror holds (one query over ``directory_people FINAL``)."""
        rows = self.sink.client.query(
            f"SELECT person_id, unit, attributes FROM {self.sink.database}.directory_people FINAL"
        ).result_rows
        self._written = {str(p): (str(u), str(a)) for p, u, a in rows}

    def plan_changes(self, lookup: Callable[[bytes], object]) -> Plan:
        """The writes for the noted keys; ``lookup`` gives a key's stored value (None when the
        key was deleted). The noted keys are taken: give them back with ``retry`` on failure."""
        keys, self._changed = self._changed, set()
        entries = {k: parse_directory_entry(lookup(k.encode())) for k in keys}
        return self._plan(entries, keys)

    def plan_all(self, records: Iterable[tuple[object, object]]) -> Plan:
        """The writes that make the mirror equal the whole directory (after ``load``)."""
        self._changed.clear()  # covered: the whole table is read now
        entries: dict[str, Any] = dict(directory_entries(records))
        gone = set(self._written or ()) - set(entries)
        return self._plan({**entries, **dict.fromkeys(gone)}, set(entries) | gone)

    def _plan(self, entries: Mapping[str, Mapping[str, Any] | None], keys: set[str]) -> Plan:
        written = self._written if self._written is not None else {}
        plan = Plan(keys=keys)
        for person, entry in entries.items():
            if entry is None:
                if person in written:
                    plan.deletes.append(person)
                continue
            row = mirror_row(entry)
            if written.get(person) != row:
                plan.upserts.append((person, *row))
        plan.deletes.sort()
        return plan

    def write(self, plan: Plan) -> None:
        """Insert and delete (raises on failure; nothing is marked written then)."""
        db = self.sink.database
        if plan.deletes:  # before the inserts: a key is in at most one of the two lists
            self.sink.client.command(
                f"DELETE FROM {db}.directory_people WHERE person_id IN {{ids:Array(String)}}",
                parameters={"ids": plan.deletes},
            )
        if plan.upserts:
            self.sink.client.insert(
                f"{db}.directory_people",
                plan.upserts,
                column_names=("person_id", "unit", "attributes"),
            )
        written = self._written if self._written is not None else {}
        for person in plan.deletes:
            written.pop(person, None)
        for person, unit, attrs in plan.upserts:
            written[person] = (unit, attrs)
        self._written = written
        self.rows_inserted += len(plan.upserts)
        self.rows_deleted += len(plan.deletes)

    def retry(self, plan: Plan) -> None:
        """Note a failed plan's keys again (the next write covers them)."""
        self._changed |= plan.keys
