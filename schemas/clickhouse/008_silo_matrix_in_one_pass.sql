-- daily_silo_matrix, the same rows as 005_secondary_suppression.sql defines them, computed in
-- one pass: ClickHouse inlines a CTE wherever it is referenced, and 005's `groups` (which
-- reads daily_ei_index) was evaluated about six times per query, whatever the period asked
-- for (8.4 s for a year of 1.4M events; docs/performance.md). Here `cells` and `groups` are
-- read once, gathered per day into arrays, and the rules of 005 are applied per day with
-- array functions:
-- - a cell is visible when both its units are shown in daily_ei_index and neither unit is
--   exposed: a unit is exposed when the units at the other end of its cells between two units
--   that are not shown hold 1 to k - 1 people in all;
-- - when the units at the ends of the day's hidden cells between two units hold 1 to k - 1
--   people in all, the day's cells between two units are left out (the diagonal stays).
-- tests/integration/test_secondary_suppression.py checks the rows against the Python oracle.
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
    days AS
    (
        SELECT c.day AS day, c.cell_list AS cell_list, g.units AS units, g.people AS people,
               g.shown AS shown
        FROM
        (
            SELECT day, groupArray((toString(from_unit), toString(to_unit), interactions)) AS cell_list
            FROM cells GROUP BY day
        ) AS c
        INNER JOIN
        (
            SELECT day, groupArray(toString(unit)) AS units, groupArray(people) AS people,
                   groupArray(shown) AS shown
            FROM groups GROUP BY day
        ) AS g ON c.day = g.day
    ),
    units_exposed AS
    (
        SELECT day, cell_list, units, people, shown,
               arrayFilter(
                   u -> arraySum(
                       o -> if(shown[indexOf(units, o)], toUInt64(0), toUInt64(people[indexOf(units, o)])),
                       arrayDistinct(arrayMap(c -> if(c.1 = u, c.2, c.1),
                           arrayFilter(c -> c.1 != c.2 AND (c.1 = u OR c.2 = u), cell_list)))
                   ) BETWEEN 1 AND {min_group_size} - 1,
                   units) AS exposed
        FROM days
    ),
    judged AS
    (
        SELECT day, cell_list, units, people,
               arrayMap(c -> shown[indexOf(units, c.1)] AND shown[indexOf(units, c.2)]
                             AND NOT has(exposed, c.1) AND NOT has(exposed, c.2),
                        cell_list) AS visible,
               arraySum(u -> toUInt64(people[indexOf(units, u)]),
                   arrayDistinct(arrayFlatten(arrayMap(
                       (c, v) -> if(NOT v AND c.1 != c.2, [c.1, c.2], CAST([], 'Array(String)')),
                       cell_list, visible)))) AS crossing_hidden
        FROM units_exposed
    )
SELECT day, toLowCardinality(cell.1) AS from_unit, toLowCardinality(cell.2) AS to_unit,
       cell.3 AS interactions
FROM judged
ARRAY JOIN cell_list AS cell, visible AS v
WHERE v AND (cell.1 = cell.2 OR NOT (crossing_hidden BETWEEN 1 AND {min_group_size} - 1));

-- Re-created views run as their definer (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_silo_matrix MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
