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

-- Unit x unit interaction matrix per day. Each row and column of the matrix adds up to a
-- figure of daily_ei_index (a unit's internal ties are its diagonal cell, its external ties
-- the rest of its row and column; the org row the sum of all), so a cell is shown exactly
-- when both its units are shown in daily_ei_index that day: its group is the people of its
-- two units (each at least k), and what a total minus the visible cells leaves is the ties
-- with the hidden units, which together cover 0 or at least k people.
CREATE OR REPLACE VIEW {db}.daily_silo_matrix AS
SELECT c.day AS day, c.from_unit AS from_unit, c.to_unit AS to_unit, c.interactions AS interactions
FROM {db}.daily_ei_index AS f
INNER JOIN
(
    SELECT day, from_unit, to_unit, count() AS interactions
    FROM {db}.interactions
    GROUP BY day, from_unit, to_unit
) AS c ON f.day = c.day AND f.unit = c.from_unit
INNER JOIN {db}.daily_ei_index AS t ON c.day = t.day AND c.to_unit = t.unit;

-- Re-created views run as their definer again (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_ei_index MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_silo_matrix MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
