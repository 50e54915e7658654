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

-- Re-created views run as their definer again (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_ei_index MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_silo_matrix MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_active_by_unit MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
