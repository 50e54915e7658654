-- Secondary suppression (differencing; docs/privacy.md, docs/metrics.md): where a total is
-- shown beside its parts, the hidden parts of one total together cover 0 or at least k people,
-- so no hidden part is recovered as total - visible parts. {secondary_shown} is the rule of
-- pipeline/metrics/suppression.py (filled in by migrate): over the rows of one total (_total),
-- a row is shown when its group (_people) has k people and, when the hidden parts cover
-- between 1 and k - 1 people, it is not the visible part with the fewest people (ties: the
-- smallest name), nor the total when no part is visible.

-- Krackhardt & Stern E-I index per unit and day, and for the whole org (unit = '*'): as in
-- 003, with the org row as the total of the unit rows of its day (internal('*') is the sum
-- of the units' internal ties, external('*') half the sum of their external ties). A unit's
-- group: its distinct people active that day or at an end of its ties ('*': all of them).
CREATE OR REPLACE VIEW {db}.daily_ei_index AS
SELECT day, unit, internal, external, ei_index, cross_silo_share
FROM
(
    SELECT *, {secondary_shown} AS _shown
    FROM
    (
        SELECT g.day AS day, g.unit AS unit, t.internal AS internal, t.external AS external,
               if(t.internal + t.external = 0, NULL,
                  (toInt64(t.external) - toInt64(t.internal)) / (t.internal + t.external)) AS ei_index,
               if(t.internal + t.external = 0, NULL, t.external / (t.internal + t.external)) AS cross_silo_share,
               g.day AS _total, g.unit AS _part, toUInt8(g.unit = '*') AS _is_total,
               g.people AS _people, {min_group_size} AS _k
        FROM
        (
            SELECT day, arrayJoin([u, '*']) AS unit, uniqExact(person) AS people
            FROM
            (
                SELECT day, actor_unit AS u, actor_id AS person FROM {db}.events FINAL
                UNION ALL
                SELECT day, to_unit AS u, target_id AS person FROM {db}.interactions
            )
            GROUP BY day, unit
        ) AS g
        LEFT JOIN
        (
            SELECT day, unit, countIf(inside) AS internal, countIf(NOT inside) AS external
            FROM
            (
                SELECT day, from_unit AS unit, from_unit = to_unit AS inside FROM {db}.interactions
                UNION ALL
                SELECT day, to_unit AS unit, 0 AS inside FROM {db}.interactions WHERE from_unit != to_unit
            )
            GROUP BY day, unit
            UNION ALL
            SELECT day, '*' AS unit, countIf(from_unit = to_unit) AS internal,
                   countIf(from_unit != to_unit) AS external
            FROM {db}.interactions GROUP BY day
        ) AS t ON g.day = t.day AND g.unit = t.unit
    )
)
WHERE _shown;

-- Unit x unit interaction matrix per day. Its rows and columns add up to figures of
-- daily_ei_index (a unit's internal ties are its diagonal cell, its external ties the other
-- cells of its row and column; the org's internal and external ties the sums of all diagonal
-- and all other cells), so a cell is shown only when both its units are shown there; its
-- group: the people of its two units (each at least k). What a total minus its shown cells
-- leaves must cover 0 or at least k people (docs/privacy.md):
-- - a shown unit's external ties leave its ties with the units at the other end of its hidden
--   cells: when those units' people (their groups as in daily_ei_index) are 1 to k - 1, the
--   unit's whole row and column are left out too (exposed);
-- - the org's external ties leave the hidden cells between two units: when the units at their
--   ends have 1 to k - 1 people in all, the day's cells between two units are left out
--   (the diagonal is daily_ei_index's internal ties already).
-- Each step only adds units of at least k people to the other totals' remainders, so one pass
-- is enough.
CREATE OR REPLACE VIEW {db}.daily_silo_matrix AS
WITH
    cells AS
    (
        SELECT day, from_unit, to_unit, count() AS interactions
        FROM {db}.interactions
        GROUP BY day, from_unit, to_unit
    ),
    groups AS
    (
        -- every unit's group of a day, as in daily_ei_index, and whether it is shown there
        SELECT day, u AS unit, uniqExact(person) AS people,
               (day, u) IN (SELECT day, unit FROM {db}.daily_ei_index) AS shown
        FROM
        (
            SELECT day, actor_unit AS u, actor_id AS person FROM {db}.events FINAL
            UNION ALL
            SELECT day, to_unit AS u, target_id AS person FROM {db}.interactions
        )
        GROUP BY day, unit
    ),
    exposed AS
    (
        SELECT o.day AS day, o.unit AS unit
        FROM
        (
            -- each unit and the units at the other end of its cells, once
            SELECT DISTINCT day, arrayJoin([(from_unit, to_unit), (to_unit, from_unit)]) AS pair,
                   pair.1 AS unit, pair.2 AS other
            FROM cells WHERE from_unit != to_unit
        ) AS o
        INNER JOIN groups AS h ON o.day = h.day AND o.other = h.unit
        WHERE NOT h.shown
        GROUP BY o.day, o.unit
        HAVING sum(h.people) < {min_group_size}
    ),
    kept AS
    (
        SELECT c.day AS day, c.from_unit AS from_unit, c.to_unit AS to_unit,
               c.interactions AS interactions,
               f.shown AND t.shown AND (c.day, c.from_unit) NOT IN exposed
                   AND (c.day, c.to_unit) NOT IN exposed AS visible
        FROM cells AS c
        INNER JOIN groups AS f ON c.day = f.day AND c.from_unit = f.unit
        INNER JOIN groups AS t ON c.day = t.day AND c.to_unit = t.unit
    ),
    crossing_exposed AS
    (
        SELECT e.day AS day
        FROM
        (
            SELECT DISTINCT day, arrayJoin([from_unit, to_unit]) AS unit
            FROM kept WHERE NOT visible AND from_unit != to_unit
        ) AS e
        INNER JOIN groups AS g ON e.day = g.day AND e.unit = g.unit
        GROUP BY e.day
        HAVING sum(g.people) < {min_group_size}
    )
SELECT day, from_unit, to_unit, interactions
FROM kept
WHERE visible AND (from_unit = to_unit OR day NOT IN crossing_exposed);

-- Active people and events per unit and day, adoption rate = active / headcount of the unit
-- in the directory (NULL when the directory does not know the unit): as in 003, with the day's
-- active people of the whole org (shown where a day has one platform, in
-- daily_active_by_platform) as the total of the unit rows. Group: the unit's active people.
CREATE OR REPLACE VIEW {db}.daily_active_by_unit AS
SELECT a.day AS day, a.unit AS unit, a.active_users AS active_users, a.events AS events,
       if(h.headcount > 0, a.active_users / h.headcount, NULL) AS adoption_rate
FROM
(
    SELECT day, unit, active_users, events
    FROM
    (
        SELECT *, {secondary_shown} AS _shown
        FROM
        (
            SELECT day, p.1 AS unit, p.2 AS _is_total, uniqExact(actor_id) AS active_users,
                   count() AS events, day AS _total, unit AS _part, active_users AS _people,
                   {min_group_size} AS _k
            FROM {db}.events FINAL
            ARRAY JOIN [(actor_unit, toUInt8(0)), ('', toUInt8(1))] AS p
            GROUP BY day, p
        )
    )
    WHERE _shown AND NOT _is_total
) AS a
LEFT JOIN
(
    SELECT unit, count() AS headcount FROM {db}.directory_people FINAL GROUP BY unit
) AS h ON a.unit = h.unit;

-- The other views whose group is the unit's active people of the day (as daily_active_by_unit,
-- docs/metrics.md): their rows count the unit's active people too (observers + contributors,
-- active_users, people, dau) or its events, beside the same org total, so they show exactly
-- the (day, unit) rows daily_active_by_unit shows after secondary suppression. Definitions as
-- in 003, with that condition added to the primary one.

CREATE OR REPLACE VIEW {db}.participation_pyramid AS
SELECT day, unit,
       countIf(contributions = 0) AS observers,
       countIf(contributions > 0 AND contributions < h) AS contributors,
       countIf(contributions >= h) AS heavy_contributors
FROM
(
    SELECT day, actor_unit AS unit, actor_id,
           countIf(event_type IN {contribution_types}) AS contributions,
           (SELECT toUInt32OrDefault(any(value), toUInt32(5)) FROM {db}.config FINAL WHERE key = 'heavy_contributions') AS h
    FROM {db}.events FINAL
    GROUP BY day, unit, actor_id
)
GROUP BY day, unit
HAVING count() >= {min_group_size} AND (day, unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

CREATE OR REPLACE VIEW {db}.daily_baseline_ratio AS
SELECT c.day AS day, c.unit AS unit, c.events AS events,
       p.events / 4 AS baseline_events,
       if(p.events = 0, NULL, c.events / (p.events / 4)) AS ratio
FROM
(
    SELECT day, actor_unit AS unit, count() AS events, uniqExact(actor_id) AS people
    FROM {db}.events FINAL GROUP BY day, unit
) AS c
INNER JOIN
(
    SELECT day + 7 * w AS target_day
    FROM (SELECT DISTINCT day FROM {db}.events) ARRAY JOIN [1, 2, 3, 4] AS w
    GROUP BY target_day
    HAVING count() = 4
) AS h ON c.day = h.target_day
LEFT JOIN
(
    SELECT day + 7 * w AS target_day, actor_unit AS unit, count() AS events
    FROM {db}.events FINAL ARRAY JOIN [1, 2, 3, 4] AS w
    GROUP BY target_day, unit
) AS p ON c.day = p.target_day AND c.unit = p.unit
WHERE c.people >= {min_group_size} AND (c.day, c.unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

CREATE OR REPLACE VIEW {db}.daily_stickiness AS
SELECT d AS day, unit, dau, wau, mau, dau / mau AS stickiness
FROM
(
    SELECT active_day + n AS d, unit,
           uniqExactIf(actor_id, n = 0) AS dau,
           uniqExactIf(actor_id, n < 7) AS wau,
           uniqExact(actor_id) AS mau
    FROM
    (
        SELECT DISTINCT day AS active_day, actor_unit AS unit, actor_id FROM {db}.events FINAL
    )
    ARRAY JOIN range(28) AS n
    GROUP BY d, unit
)
WHERE dau >= greatest(1, {min_group_size}) AND (d, unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

CREATE OR REPLACE VIEW {db}.daily_boundary_spanners AS
SELECT a.day AS day, a.unit AS unit, a.active_users AS active_users,
       ifNull(b.spanners, 0) AS boundary_spanners
FROM
(
    SELECT day, actor_unit AS unit, uniqExact(actor_id) AS active_users
    FROM {db}.events FINAL GROUP BY day, unit
) AS a
LEFT JOIN
(
    SELECT day, unit, countIf(others >= (SELECT toUInt32OrDefault(any(value), toUInt32(3)) FROM {db}.config FINAL WHERE key = 'boundary_spanner_units')) AS spanners
    FROM
    (
        SELECT day, unit, person, uniqExactIf(other, other != unit AND other != 'unknown') AS others
        FROM
        (
            SELECT day, from_unit AS unit, actor_id AS person, to_unit AS other FROM {db}.interactions
            UNION ALL
            SELECT day, to_unit AS unit, target_id AS person, from_unit AS other FROM {db}.interactions
        )
        GROUP BY day, unit, person
    )
    GROUP BY day, unit
) AS b ON a.day = b.day AND a.unit = b.unit
WHERE a.active_users >= {min_group_size} AND (a.day, a.unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

CREATE OR REPLACE VIEW {db}.daily_contribution_inequality AS
SELECT day, unit, people, contributions,
       if(contributions = 0, NULL,
          2 * arraySum(arrayMap((x, i) -> x * i, asc, arrayEnumerate(asc))) / (people * contributions)
          - (people + 1) / people) AS gini,
       if(contributions = 0, NULL,
          arraySum(arraySlice(arrayReverse(asc), 1, toUInt32(ceil(people / 10)))) / contributions) AS top10_share,
       if(contributions = 0, NULL,
          arrayFirstIndex(c -> 2 * c >= contributions, arrayCumSum(arrayReverse(asc)))) AS absence_factor
FROM
(
    SELECT day, unit, count() AS people, sum(c) AS contributions, arraySort(groupArray(c)) AS asc
    FROM
    (
        SELECT day, actor_unit AS unit, actor_id,
               countIf(event_type IN {contribution_types}) AS c
        FROM {db}.events FINAL
        GROUP BY day, unit, actor_id
    )
    GROUP BY day, unit
)
WHERE people >= {min_group_size} AND (day, unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

CREATE OR REPLACE VIEW {db}.daily_growth AS
SELECT a.day AS day, a.unit AS unit, a.active_users AS active_users,
       j.n AS new_members, f.n AS first_time_contributors, r.n AS returning_users,
       z.n AS dormant_users
FROM
(
    SELECT day, actor_unit AS unit, uniqExact(actor_id) AS active_users
    FROM {db}.events FINAL GROUP BY day, unit
) AS a
LEFT JOIN
(
    SELECT day, actor_unit AS unit, uniqExact(actor_id) AS n
    FROM {db}.events FINAL WHERE event_type = 'member_joined' GROUP BY day, unit
) AS j ON a.day = j.day AND a.unit = j.unit
LEFT JOIN
(
    SELECT first_day AS day, first_unit AS unit, count() AS n
    FROM
    (
        SELECT actor_id, min(day) AS first_day, argMin(actor_unit, (ts_ms, event_id)) AS first_unit
        FROM {db}.events FINAL
        WHERE event_type IN {contribution_types}
        GROUP BY actor_id
    )
    GROUP BY day, unit
) AS f ON a.day = f.day AND a.unit = f.unit
LEFT JOIN
(
    SELECT t.day AS day, t.unit AS unit, uniqExact(t.actor_id) AS n
    FROM
    (
        SELECT DISTINCT day, actor_unit AS unit, actor_id FROM {db}.events FINAL
    ) AS t
    INNER JOIN
    (
        SELECT DISTINCT day AS prev_day, actor_id FROM {db}.events FINAL
    ) AS p ON t.actor_id = p.actor_id
    WHERE p.prev_day < t.day AND p.prev_day >= t.day - 28
    GROUP BY t.day, t.unit
) AS r ON a.day = r.day AND a.unit = r.unit
LEFT JOIN
(
    SELECT d AS day, unit, countIf(recent = 0) AS n
    FROM
    (
        SELECT active_day + n AS d, unit, actor_id, countIf(n < 28) AS recent
        FROM
        (
            SELECT DISTINCT day AS active_day, actor_unit AS unit, actor_id FROM {db}.events FINAL
        )
        ARRAY JOIN range(56) AS n
        GROUP BY d, unit, actor_id
    )
    GROUP BY day, unit
) AS z ON a.day = z.day AND a.unit = z.unit
WHERE a.active_users >= {min_group_size} AND (a.day, a.unit) IN (SELECT day, unit FROM {db}.daily_active_by_unit);

-- Re-created views run as their definer again (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_ei_index MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_silo_matrix MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_active_by_unit MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.participation_pyramid MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_baseline_ratio MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_stickiness MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_boundary_spanners MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_contribution_inequality MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_growth MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
