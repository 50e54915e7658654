-- Response per community (space): docs/metrics.md, daily_response_by_space.

-- One row per post and its first reply by someone else: as in 003, with the space and platform
-- of the post added as the last columns (NULL when the event names none). The columns of 003
-- keep their names, types and order for their readers (daily_response, the gauge
-- teilhabe_unanswered_posts, pipeline/ops/readings.py).
CREATE OR REPLACE VIEW {db}.post_first_response AS
SELECT p.day AS day, p.unit AS unit, p.event_id AS event_id, p.cid AS content_id,
       p.author AS author_id, p.ts_ms AS posted_ms,
       if(r.answered = 1, greatest(r.first_ms, p.ts_ms), NULL) AS first_response_ms,
       if(r.answered = 1, greatest(r.first_ms, p.ts_ms) - p.ts_ms, NULL) AS response_ms,
       p.space_id AS space_id, p.platform AS platform
FROM
(
    SELECT day, actor_unit AS unit, event_id, actor_id AS author, assumeNotNull(content_id) AS cid,
           ts_ms, space_id, platform
    FROM {db}.events FINAL
    WHERE event_type = 'post_created' AND content_id IS NOT NULL
) AS p
LEFT JOIN
(
    SELECT q.cid AS cid, q.author AS author, min(e.ts_ms) AS first_ms, toUInt8(1) AS answered
    FROM {db}.events AS e FINAL
    INNER JOIN
    (
        SELECT DISTINCT assumeNotNull(content_id) AS cid, actor_id AS author
        FROM {db}.events FINAL
        WHERE event_type = 'post_created' AND content_id IS NOT NULL
    ) AS q ON assumeNotNull(e.root_content_id) = q.cid
    WHERE e.event_type = 'reply_created' AND e.root_content_id IS NOT NULL
      AND e.actor_id != q.author
    GROUP BY q.cid, q.author
) AS r ON p.cid = r.cid AND p.author = r.author;

-- Response per day of the post and the space it was posted in (and its platform: a space id
-- is the platform's): posts, those first answered by someone else within the target (config
-- 'response_target_h'), the median seconds to the first response over the answered posts (NaN
-- while none is answered), and the posts not answered at all; the rules of daily_response, over
-- the same post_first_response. Posts without a space (space_id NULL or '') are left out: they
-- belong to no community (daily_response counts them by unit). Platform '' when the event
-- names none. Group: the distinct authors of the posts.
-- Secondary suppression (docs/privacy.md, "Secondary suppression (differencing)"): a day's
-- posts are shown as the sum of daily_response's unit rows whenever no unit is hidden, so they
-- are a total beside these rows; its parts are the (space, platform) rows and the posts
-- without a space (never shown). The posts, answered and unanswered counts of the parts left
-- out are that total minus the rows shown, so the authors of those posts (counted once, not
-- added up: one author may post in several spaces) must be 0 or at least k; otherwise the shown
-- row with the fewest authors (ties: the smallest space, then platform) is left out too. It
-- has k authors, so one step is enough (the rule of pipeline/metrics/suppression.py, with the
-- hidden people counted exactly).
CREATE OR REPLACE VIEW {db}.daily_response_by_space AS
WITH
    parts AS
    (
        SELECT
            day,
            ifNull(space_id, '') AS space,
            ifNull(platform, '') AS plat,
            count() AS posts,
            countIf(isNotNull(response_ms) AND assumeNotNull(response_ms) <= 3600000 * (SELECT toUInt32OrDefault(any(value), toUInt32(24)) FROM {db}.config FINAL WHERE key = 'response_target_h')) AS answered_within_target,
            quantileExactInclusiveIf(0.5)(assumeNotNull(response_ms) / 1000, isNotNull(response_ms)) AS median_first_response_s,
            countIf(isNull(response_ms)) AS unanswered,
            uniqExact(author_id) AS authors,
            groupUniqArray(author_id) AS author_ids,
            space != '' AND authors >= {min_group_size} AS primary_shown
        FROM {db}.post_first_response
        GROUP BY day, space, plat
    ),
    remainder AS
    (
        -- per day: the distinct authors of the parts left out, and the smallest part shown
        SELECT day,
               uniqExactArrayIf(author_ids, NOT primary_shown) AS hidden_authors,
               minIf((authors, space, plat), primary_shown) AS smallest
        FROM parts
        GROUP BY day
    )
SELECT p.day AS day, p.space AS space_id, p.plat AS platform, p.posts AS posts,
       p.answered_within_target AS answered_within_target,
       p.median_first_response_s AS median_first_response_s, p.unanswered AS unanswered
FROM parts AS p
INNER JOIN remainder AS r ON p.day = r.day
WHERE p.primary_shown
  AND NOT (r.hidden_authors > 0 AND r.hidden_authors < {min_group_size}
           AND (p.authors, p.space, p.plat) = r.smallest);

-- Re-created and new views run as their definer (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_response_by_space MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
