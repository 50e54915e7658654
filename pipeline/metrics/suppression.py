"""Secondary suppression (differencing): the one rule, in Python and as the views' SQL.

Primary suppression leaves out every figure about fewer than k people. Where a total is shown
beside its parts (the org row of ``daily_ei_index`` beside the unit rows), the hidden parts can
be recovered by subtraction: total - visible parts. The rule (docs/privacy.md, "Secondary
suppression (differencing)"; docs/metrics.md, k per output):

- a part is hidden when it covers fewer than k people (primary); the total likewise;
- the hidden parts of one total together must cover 0 or at least k people; otherwise the
  visible part with the fewest people (ties: the smallest part name) is hidden too, or the total
  when no part is visible.

One step is enough: the further part hidden covers at least k people, so the hidden parts then
cover at least k. ``secondary_suppression`` is the rule over plain numbers (tests, and any
output computed in Python); ``SECONDARY_SHOWN_SQL`` is the same rule as a ClickHouse expression
over window functions, filled into the views by ``pipeline.sinks.migrate`` as the placeholder
``{secondary_shown}``. People of a part are added up: the parts must partition the total's
people (units do: each person is in one unit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Suppression:
    """What to leave out of one total and its parts."""

    hidden_parts: frozenset[str]
    total_hidden: bool


def secondary_suppression(parts: Mapping[str, int], total_people: int, k: int) -> Suppression:
    """The parts (name -> people) and the total to hide so that neither a part nor a union of
    parts under k people is shown or recoverable as total - visible parts."""
    hidden = {p for p, n in parts.items() if n < k}
    total_hidden = total_people < k
    hidden_people = sum(parts[p] for p in hidden)
    # the step runs whether or not the total is shown (as SECONDARY_SHOWN_SQL does): with parts
    # that partition the total's people the total is under k only when every part is, so this
    # changes nothing there, and it is the safer side when they do not
    if 0 < hidden_people < k:
        visible = sorted((n, p) for p, n in parts.items() if p not in hidden)
        if visible:
            hidden.add(visible[0][1])
        else:
            total_hidden = True
    return Suppression(frozenset(hidden), total_hidden)


#: The rule as a ClickHouse expression: 1 when a row is shown. Its query must give the columns
#: ``_total`` (the key of the row's total, e.g. the day), ``_part`` (the part's name, a String),
#: ``_is_total`` (1 on the total's own row), ``_people`` and ``_k``; window functions may not
#: stand in WHERE, so select it as a column and filter one level up.
SECONDARY_SHOWN_SQL = (
    "(_people >= _k AND NOT ("
    "sumIf(_people, NOT _is_total AND _people < _k) OVER (PARTITION BY _total) > 0 "
    "AND sumIf(_people, NOT _is_total AND _people < _k) OVER (PARTITION BY _total) < _k "
    "AND if(_is_total, "
    "countIf(NOT _is_total AND _people >= _k) OVER (PARTITION BY _total) = 0, "
    "(_people, _part) = minIf((_people, _part), NOT _is_total AND _people >= _k) "
    "OVER (PARTITION BY _total))))"
)


def placeholders() -> dict[str, str]:
    """The placeholders of this rule in the migrations (``pipeline.sinks.migrate``)."""
    return {"{secondary_shown}": SECONDARY_SHOWN_SQL}
