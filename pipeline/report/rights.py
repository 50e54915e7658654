"""What the report does when its ClickHouse user may read only the aggregate views.

The ``analyst`` role (docs/privacy.md, "Roles in ClickHouse") may read the k-suppressed views
and nothing else. Three reads of the report go beyond them: the newest day of ``events``, the
coverage counts (``events``) and the period median of response per space
(``post_first_response``). For such a user the report falls back to a view (the newest day) or
leaves the figure out with a sentence saying why and who can read it (``data_steward``), instead
of failing as a whole.
"""

from __future__ import annotations

from pipeline.sinks.clickhouse import classify_error

#: ClickHouse's answers to a read the user has no grant for.
DENIED_CODES = frozenset(
    {497, 291}
)  # ACCESS_DENIED (NOT_ENOUGH_PRIVILEGES), DATABASE_ACCESS_DENIED
DENIED_NAMES = frozenset({"ACCESS_DENIED", "NOT_ENOUGH_PRIVILEGES", "DATABASE_ACCESS_DENIED"})


def access_denied(exc: BaseException) -> bool:
    """True when ClickHouse refused the read for lack of a grant (not for any other reason)."""
    failure = classify_error(exc)
    return failure.code in DENIED_CODES or failure.name in DENIED_NAMES


def denied_note(what: str, table: str) -> str:
    """The sentence (plain text) the report shows in place of a figure its user may not read."""
    return (
        f"{what} is left out: it is read from {table}, which this report's ClickHouse user may "
        "not read (the analyst role reads the aggregate views only). Run the report as "
        "data_steward for it (docs/privacy.md, Roles in ClickHouse)."
    )
