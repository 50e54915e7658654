"""The Community response & ideation dashboard: answered posts and how ideas travel."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models.dashboard import Panel

from pipeline.ops.dashboards.datasources import CLICKHOUSE
from pipeline.ops.dashboards.panels import (
    RUNBOOKS,
    board,
    daily_by_unit,
    live_series,
    series,
    stat_panel,
    table_panel,
    threshold_steps,
    top_spaces_panel,
)
from pipeline.ops.dashboards.queries import (
    UNIT_MATCH,
    max_by_unit,
    prom_by_unit,
    sql,
    sql_totals,
    sql_unit_table,
)

#: Response per community (space) over the selected period (daily_response_by_space): the
#: spaces are no units, so the $unit variable does not apply; the busiest 50 rows.
RESPONSE_BY_SPACE_SQL = """
SELECT space_id, platform,
       sum(posts) AS posts,
       round(sum(answered_within_target) / posts, 3) AS answered_share,
       round(avgIf(median_first_response_s, NOT isNaN(median_first_response_s)) / 3600, 1)
           AS median_h,
       sum(unanswered) AS unanswered
FROM daily_response_by_space
WHERE $__dateFilter(day)
GROUP BY space_id, platform
ORDER BY unanswered DESC, posts DESC, space_id, platform
LIMIT 50
"""


def response_by_space() -> list[cogbuilder.Builder[Panel]]:
    """Per community: the response table of the period and the unanswered posts now."""
    return [
        table_panel(
            "Response by space (selected period)",
            "Per space and platform: posts, share answered within the target, mean of the "
            "daily median time to first response (hours), posts not answered at all "
            "(daily_response_by_space; posts without a space left out, spaces below k authors "
            "left out, and the smallest shown one of a day too where the day's posts minus "
            "the shown spaces would leave 1 to k - 1 authors: docs/privacy.md).",
            sql(RESPONSE_BY_SPACE_SQL),
        ),
        top_spaces_panel(
            "Unanswered posts by space (now)",
            "Posts older than the response target without a reply by someone else, per space "
            "(teilhabe_unanswered_posts_by_space: the spaces with the most, suppressed as "
            "daily_response_by_space).",
            "teilhabe_unanswered_posts_by_space",
            9,
        ),
    ]


def response_ideation() -> dict[str, Any]:
    """Are posts answered, do ideas travel: unanswered posts, time to first response (per unit
    and per space), ideation volume and the idea funnel."""
    panels: list[cogbuilder.Builder[Panel]] = [
        stat_panel(
            "Unanswered posts (now)",
            "Posts older than the response target without a reply by someone else, per unit "
            f"(teilhabe_unanswered_posts). Above 20 for 1 h fires UnansweredPostsHigh "
            f"({RUNBOOKS}#unansweredpostshigh).",
            max_by_unit("teilhabe_unanswered_posts"),
            legend="{{unit}}",
            span=12,
            thresholds=threshold_steps((None, "green"), (10, "orange"), (20, "red")),
        ),
        stat_panel(
            "Ideas, votes, comments (newest day)",
            "Ideation of the selected units on the newest day of the facts (teilhabe_ideation).",
            f"sum by (kind) (max by (unit, kind) (teilhabe_ideation{{{UNIT_MATCH}}}))",
            legend="{{kind}}",
            span=12,
        ),
        live_series(
            "Unanswered posts per unit",
            "Posts of the last TEILHABE_UNANSWERED_LOOKBACK_DAYS days without a timely reply.",
            prom_by_unit("teilhabe_unanswered_posts"),
            threshold=(20, "red"),
        ),
        daily_by_unit(
            "Answered within target (daily)",
            "Share of the day's posts whose first reply by someone else came within "
            "TEILHABE_RESPONSE_TARGET_H hours (daily_response).",
            "daily_response",
            "answered_within_target / posts AS answered_share",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        daily_by_unit(
            "Median time to first response (daily)",
            "Median seconds from a post to its first reply by someone else, over the day's "
            "answered posts (daily_response; CHAOSS Time to First Response).",
            "daily_response",
            "median_first_response_s",
            unit="s",
            min_value=0,
        ),
        table_panel(
            "Response by unit (selected period)",
            "Posts, share answered within the target, mean of the daily median and p90 time "
            "to first response (hours).",
            sql_unit_table(
                "daily_response",
                "answered_share",
                "sum(posts) AS posts",
                "round(sum(answered_within_target) / posts, 3) AS answered_share",
                "round(avg(median_first_response_s) / 3600, 1) AS median_h",
                "round(avg(p90_first_response_s) / 3600, 1) AS p90_h",
            ),
        ),
        *response_by_space(),
        series(
            "Ideation (daily)",
            "Ideas submitted by the selected units and votes and comments on their ideas "
            "(daily_ideation).",
            CLICKHOUSE,
            [
                sql_totals(
                    "daily_ideation",
                    "sum(ideas) AS ideas, sum(votes) AS votes, sum(comments) AS comments",
                )
            ],
            bars=True,
        ),
        daily_by_unit(
            "Units reached by ideas (daily)",
            "Other units that voted or commented on the unit's ideas that day (daily_ideation).",
            "daily_ideation",
            "voting_units + commenting_units AS units_reached",
            min_value=0,
        ),
        table_panel(
            "Idea funnel by unit (ideas submitted in the period)",
            "Ideas and how many of them reached each status, with the mean of the daily median "
            "days to a decision (idea_funnel).",
            sql_unit_table(
                "idea_funnel",
                "submitted DESC",
                "sum(submitted) AS submitted",
                "sum(in_review) AS in_review",
                "sum(accepted) AS accepted",
                "sum(rejected) AS rejected",
                "sum(implemented) AS implemented",
                "round(avg(median_days_to_decision), 1) AS median_days_to_decision",
            ),
            span=24,
        ),
    ]
    return board(
        "teilhabe-response-ideation",
        "Teilhabe · Community response & ideation",
        "Are posts answered in time, and do ideas reach other units? Groups below k people "
        "are left out.",
        panels,
    )
