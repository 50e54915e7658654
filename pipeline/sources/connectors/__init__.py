"""Connectors: a platform's export (history) as contract v1 events.

Each format module exposes ``read(source: Path, ctx: ImportContext) -> Iterator[RawEvent]``.
Readers stream (a multi-GB export is never loaded whole), yield events with the platform's own
person ids (pseudonymised by ``pipeline.sources.importer`` before anything is written), record every
record they skip with a reason in ``ctx.stats``, and put profile fields (e.g. a department)
into ``ctx.people``. Message text is only looked at to find mentions: never yielded or logged.
"""

from __future__ import annotations
