"""Response per community over the report's period, from ``daily_response_by_space``.

Posts, answers within the target and unanswered posts are counts: the period's figure is the sum
of the rows the view shows. A median is not a sum, and the median of daily medians is not the
period's median. So the period's median time to first response (CHAOSS "Time to First
Response", docs/metrics.md) is computed over exactly the posts the shown rows count: the posts of
``post_first_response`` whose (day, space, platform) is a row ``daily_response_by_space`` shows
(each such row has at least k authors and passed secondary suppression there), grouped per space
and platform and checked again for at least k distinct authors. A median over those posts says
nothing about a group the view hides.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.report.rights import access_denied, denied_note

VIEW = "daily_response_by_space"
PERIOD = "day BETWEEN {first:Date} AND {last:Date}"

MEDIAN_NOTE = (
    "Posts, answered and unanswered posts are the sums of the days daily_response_by_space "
    "shows. The median is the median time to first response over the answered posts of exactly "
    "those days (not a median of daily medians), computed from post_first_response and shown "
    "only for spaces whose posts have at least k distinct authors."
)


def view_exists(client: Client, db: str) -> bool:
    return bool(client.command(f"EXISTS TABLE {db}.{VIEW}"))


def read_response_by_space(
    client: Client, db: str, params: dict[str, Any], k: int
) -> tuple[list[dict[str, Any]], str]:
    """Per space and platform over the period: posts, answered within the target, unanswered,
    the median seconds to the first response (None while none is answered); and the note on
    the method. No rows, with a note saying why, when the view does not exist yet."""
    if not view_exists(client, db):
        return [], f"The view {VIEW} does not exist in this database yet: run `teilhabe migrate`."
    sums = client.query(
        f"SELECT space_id, toString(platform) AS platform, sum(posts), "
        f"sum(answered_within_target), sum(unanswered) FROM {db}.{VIEW} WHERE {PERIOD} "
        f"GROUP BY space_id, platform",
        parameters=params,
    ).result_rows
    try:
        medians = period_medians(client, db, params, k)
    except DatabaseError as exc:
        if not access_denied(exc):
            raise
        medians, note = (
            {},
            denied_note("The period's median time to first response", "post_first_response"),
        )
    else:
        note = MEDIAN_NOTE
    out = [
        {
            "space_id": space,
            "platform": platform,
            "posts": int(posts),
            "answered_within_target": int(answered),
            "unanswered": int(unanswered),
            "median_first_response_s": medians.get((space, platform)),
        }
        for space, platform, posts, answered, unanswered in sums
    ]
    out.sort(key=lambda r: (-r["posts"], r["space_id"], r["platform"]))
    return out, note


def period_medians(
    client: Client, db: str, params: dict[str, Any], k: int
) -> dict[tuple[str, str], float | None]:
    """Per (space, platform): the median seconds to the first response over the answered posts
    of the rows the view shows (None while none is answered); spaces under k authors left out."""
    return {
        (space, platform): (None if median != median else float(median))  # NaN: none answered
        for space, platform, median in client.query(
            f"SELECT ifNull(space_id, '') AS space, toString(ifNull(platform, '')) AS plat, "
            f"quantileExactInclusiveIf(0.5)(assumeNotNull(response_ms) / 1000, "
            f"isNotNull(response_ms)) AS median_s "
            f"FROM {db}.post_first_response WHERE {PERIOD} "
            f"AND (day, ifNull(space_id, ''), toString(ifNull(platform, ''))) IN "
            f"(SELECT day, space_id, toString(platform) FROM {db}.{VIEW} WHERE {PERIOD}) "
            f"GROUP BY space, plat HAVING uniqExact(author_id) >= {{k:UInt32}}",
            parameters={**params, "k": k},
        ).result_rows
    }
