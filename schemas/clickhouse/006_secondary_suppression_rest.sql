-- Secondary suppression (differencing; docs/privacy.md, "Secondary suppression
-- (differencing)") for the totals of other groupings than units: the same rule,
-- {secondary_shown} of pipeline/metrics/suppression.py (filled in by migrate), as in 005.

-- Engagement per space and platform and day: as in 003, with the platform's active people of
-- the day (daily_active_by_platform's row) as the total of its space rows (the space '' holds
-- the events without a space). People of spaces are added up: with nobody in two spaces they
-- partition the platform's people; where people are in several spaces the sum only grows, and
-- the platform's people minus the shown spaces' is then no exact count of anyone.
-- Group: the space's active people on that platform.
CREATE OR REPLACE VIEW {db}.daily_active_by_space AS
SELECT day, _space AS space_id, _platform AS platform, active_users, events, contributions
FROM
(
    SELECT *, {secondary_shown} AS _shown
    FROM
    (
        SELECT day, ifNull(platform, '') AS _platform, p.1 AS _space, p.2 AS _is_total,
               uniqExact(actor_id) AS active_users, count() AS events,
               countIf(event_type IN {contribution_types}) AS contributions,
               (day, _platform) AS _total, _space AS _part, active_users AS _people,
               {min_group_size} AS _k
        FROM {db}.events FINAL
        ARRAY JOIN [(ifNull(space_id, ''), toUInt8(0)), ('', toUInt8(1))] AS p
        GROUP BY day, _platform, p
    )
)
WHERE _shown AND NOT _is_total;

-- Blau diversity per space and day: as in 003. A space's people here are the sum of its
-- rows of daily_active_by_space over the platforms, so a space is shown only where every one
-- of its rows of the day is shown there (none left out by k or by secondary suppression).
CREATE OR REPLACE VIEW {db}.daily_space_diversity AS
SELECT s.day AS day, s.space_id AS space_id, s.people AS people, s.units AS units, s.blau AS blau,
       if(o.k > 1, s.blau / ((o.k - 1) / o.k), NULL) AS blau_normalised
FROM
(
    SELECT day, space AS space_id, sum(n) AS people, count() AS units,
           1 - sum(n * n) / (sum(n) * sum(n)) AS blau
    FROM
    (
        SELECT day, assumeNotNull(space_id) AS space, actor_unit AS unit,
               uniqExact(actor_id) AS n
        FROM {db}.events FINAL WHERE isNotNull(events.space_id)
        GROUP BY day, space, unit
    )
    GROUP BY day, space
) AS s
INNER JOIN
(
    SELECT day, uniqExact(actor_unit) AS k FROM {db}.events FINAL GROUP BY day
) AS o ON s.day = o.day
WHERE s.people >= {min_group_size}
  AND (s.day, s.space_id) NOT IN
  (
      SELECT day, space_id
      FROM
      (
          SELECT DISTINCT day, ifNull(space_id, '') AS space_id, ifNull(platform, '') AS platform
          FROM {db}.events FINAL
      )
      WHERE (day, space_id, platform) NOT IN
          (SELECT day, space_id, platform FROM {db}.daily_active_by_space)
  );

-- Cohorts per day: as in 003. A cohort's active members and the rest of the day's active
-- people (shown as daily_active_by_platform's row on a day with one platform, and as the
-- total of daily_active_by_unit) are two parts of that total: the cohort is shown only where
-- the rest covers 0 or at least k people (the rule with the parts cohort and rest; the rest is
-- never shown). Group: the cohort's active members.
CREATE OR REPLACE VIEW {db}.daily_cohort_activity AS
SELECT a.day AS day, a.cohort AS cohort, m.members AS members, a.active_users AS active_users,
       a.active_users / m.members AS active_rate, r.units_reached AS units_reached
FROM
(
    SELECT e.day AS day, c.cohort AS cohort, uniqExact(e.actor_id) AS active_users
    FROM {db}.events AS e FINAL
    INNER JOIN
    (
        SELECT person_id, arrayJoin(JSONExtract(attributes, 'cohorts', 'Array(String)')) AS cohort
        FROM {db}.directory_people FINAL
    ) AS c ON e.actor_id = c.person_id
    GROUP BY day, cohort
) AS a
INNER JOIN
(
    SELECT arrayJoin(JSONExtract(attributes, 'cohorts', 'Array(String)')) AS cohort, count() AS members
    FROM {db}.directory_people FINAL GROUP BY cohort
) AS m ON a.cohort = m.cohort
LEFT JOIN
(
    SELECT i.day AS day, c.cohort AS cohort,
           uniqExactIf(i.to_unit, i.to_unit != i.from_unit AND i.to_unit != 'unknown') AS units_reached
    FROM {db}.interactions AS i
    INNER JOIN
    (
        SELECT person_id, arrayJoin(JSONExtract(attributes, 'cohorts', 'Array(String)')) AS cohort
        FROM {db}.directory_people FINAL
    ) AS c ON i.actor_id = c.person_id
    GROUP BY day, cohort
) AS r ON a.day = r.day AND a.cohort = r.cohort
WHERE a.active_users >= {min_group_size}
  AND (a.day, a.cohort) IN
  (
      SELECT day, cohort
      FROM
      (
          SELECT *, {secondary_shown} AS _shown
          FROM
          (
              SELECT day, cohort, x.1 AS _role, toUInt8(x.1 = 'total') AS _is_total,
                     x.2 AS _people, (day, cohort) AS _total, x.1 AS _part,
                     {min_group_size} AS _k
              FROM
              (
                  SELECT n.day AS day, n.cohort AS cohort, n.active AS active, o.active AS org
                  FROM
                  (
                      SELECT e.day AS day, c.cohort AS cohort, uniqExact(e.actor_id) AS active
                      FROM {db}.events AS e FINAL
                      INNER JOIN
                      (
                          SELECT person_id,
                                 arrayJoin(JSONExtract(attributes, 'cohorts', 'Array(String)')) AS cohort
                          FROM {db}.directory_people FINAL
                      ) AS c ON e.actor_id = c.person_id
                      GROUP BY day, cohort
                  ) AS n
                  INNER JOIN
                  (
                      SELECT day, uniqExact(actor_id) AS active FROM {db}.events FINAL GROUP BY day
                  ) AS o ON n.day = o.day
              )
              ARRAY JOIN [('cohort', toUInt64(active)), ('rest', toUInt64(org - active)), ('total', toUInt64(org))] AS x
          )
      )
      WHERE _shown AND _role = 'cohort'
  );

-- Re-created views run as their definer again (004_analyst_views_definer.sql).
ALTER TABLE {db}.daily_active_by_space MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_space_diversity MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
ALTER TABLE {db}.daily_cohort_activity MODIFY DEFINER = CURRENT_USER SQL SECURITY DEFINER;
