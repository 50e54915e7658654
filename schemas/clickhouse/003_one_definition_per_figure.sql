-- One definition per figure (docs/metrics.md): the views of 001 and 002 as they stand now,
-- re-created, so that a database migrated before gets them too (001 and 002 stay as they were
-- applied: migrate refuses a changed file). The contribution and interaction types come from
-- the event contract ({contribution_types}, {interaction_types}, filled in by migrate).

-- User-day facts (pseudonymised): late events included, duplicates counted once.
CREATE OR REPLACE VIEW {db}.user_day_facts AS
SELECT
    day,
    actor_id,
    actor_unit AS unit,
    count() AS events,
    countIf(event_type IN {contribution_types}) AS contributions,
    countIf(event_type = 'view') AS views,
    countIf(is_late = 1) AS late_events,
    sumMap(map(toString(event_type), toUInt64(1))) AS events_by_type
FROM {db}.events FINAL
GROUP BY day, actor_id, unit;

-- Analyst views over the stored facts. Names and columns are a contract: only ever
-- added to. Every view computes from `events` (and the directory), so analysts can re-slice by
-- any window; every view leaves out groups smaller than k people (config 'min_group_size',
-- TEILHABE_MIN_GROUP_SIZE; {min_group_size} below, filled in by pipeline/sinks/migrate.py). Definitions
-- and sources: docs/metrics.md.

-- The org directory as the worker knows it (pseudonymised person -> unit), for denominators.
CREATE TABLE IF NOT EXISTS {db}.directory_people
(
    person_id  String,
    unit       LowCardinality(String),
    attributes String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY person_id;

-- Interactions (docs/design.md): a reply, reaction, mention or share with a target person other
-- than the actor; direction actor unit -> target unit.
CREATE OR REPLACE VIEW {db}.interactions AS
SELECT
    day,
    ts_ms,
    event_id,
    event_type,
    actor_id,
    actor_unit AS from_unit,
    assumeNotNull(target_actor_id) AS target_id,
    ifNull(target_unit, 'unknown') AS to_unit
FROM {db}.events FINAL
WHERE event_type IN {interaction_types}
  AND target_actor_id IS NOT NULL
  AND target_actor_id != actor_id;

-- Active people and events per unit and day; adoption rate = active / headcount of the unit
-- in the directory (NULL when the directory does not know the unit).
CREATE OR REPLACE VIEW {db}.daily_active_by_unit AS
SELECT
    a.day AS day,
    a.unit AS unit,
    a.active_users AS active_users,
    a.events AS events,
    if(h.headcount > 0, a.active_users / h.headcount, NULL) AS adoption_rate
FROM
(
    SELECT day, actor_unit AS unit, uniqExact(actor_id) AS active_users, count() AS events
    FROM {db}.events FINAL
    GROUP BY day, unit
) AS a
LEFT JOIN
(
    SELECT unit, count() AS headcount FROM {db}.directory_people FINAL GROUP BY unit
) AS h ON a.unit = h.unit
WHERE a.active_users >= {min_group_size};

-- Unit x unit interaction matrix per day. The group of a cell: the distinct people on either
-- side of its interactions.
CREATE OR REPLACE VIEW {db}.daily_silo_matrix AS
SELECT day, from_unit, to_unit, interactions
FROM
(
    SELECT
        day,
        from_unit,
        to_unit,
        count() AS interactions,
        length(arrayDistinct(arrayConcat(groupUniqArray(actor_id), groupUniqArray(target_id)))) AS people
    FROM {db}.interactions
    GROUP BY day, from_unit, to_unit
)
WHERE people >= {min_group_size};

-- Krackhardt & Stern E-I index per unit and day, and for the whole org (unit = '*').
-- Unit u: internal = interactions with both sides in u (counted once), external = with exactly
-- one side in u (sent to or received from another unit: counted for the units of both ends).
-- Org: internal = inside a unit, external = across. ei_index = (external - internal) /
-- (external + internal), NULL without ties (a unit active that day without interactions);
-- cross_silo_share = external / (external + internal). A unit has a row when it was active or
-- at either end of a tie that day; its group: its distinct people active that day or at an
-- end of its ties ('*': all of them).
CREATE OR REPLACE VIEW {db}.daily_ei_index AS
SELECT g.day AS day, g.unit AS unit, t.internal AS internal, t.external AS external,
       if(t.internal + t.external = 0, NULL,
          (toInt64(t.external) - toInt64(t.internal)) / (t.internal + t.external)) AS ei_index,
       if(t.internal + t.external = 0, NULL, t.external / (t.internal + t.external)) AS cross_silo_share
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
WHERE g.people >= {min_group_size};

-- One row per post (post_created with a content_id) and its first reply by someone else
-- (a reply_created whose root_content_id is the post, by anyone but its author), however late
-- the reply came: the one definition behind daily_response and the gauge
-- teilhabe_unanswered_posts. A reply stamped before its post (clock skew between systems) is
-- an answer all the same, with a response time of 0: first_response_ms is never before
-- posted_ms (docs/metrics.md). first_response_ms and response_ms are NULL while unanswered.
-- Fact-level (pseudonymised ids, like `interactions`): read it through the k-suppressed views.
CREATE OR REPLACE VIEW {db}.post_first_response AS
SELECT p.day AS day, p.unit AS unit, p.event_id AS event_id, p.cid AS content_id,
       p.author AS author_id, p.ts_ms AS posted_ms,
       if(r.answered = 1, greatest(r.first_ms, p.ts_ms), NULL) AS first_response_ms,
       if(r.answered = 1, greatest(r.first_ms, p.ts_ms) - p.ts_ms, NULL) AS response_ms
FROM
(
    SELECT day, actor_unit AS unit, event_id, actor_id AS author, assumeNotNull(content_id) AS cid, ts_ms
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

-- Response (CHAOSS Time to First Response): per day of the post and unit of its author, the
-- posts, those whose first reply by someone else (post_first_response) came within the target
-- (config 'response_target_h', TEILHABE_RESPONSE_TARGET_H), and the median and 0.9 quantile of
-- the time to that first reply over the answered posts (however late the answer; NaN while
-- none is answered). Group: the distinct authors of the posts.
CREATE OR REPLACE VIEW {db}.daily_response AS
SELECT day, unit, posts, answered_within_target, median_first_response_s, p90_first_response_s
FROM
(
    SELECT
        day,
        unit,
        count() AS posts,
        countIf(isNotNull(response_ms) AND assumeNotNull(response_ms) <= 3600000 * (SELECT toUInt32OrDefault(any(value), toUInt32(24)) FROM {db}.config FINAL WHERE key = 'response_target_h')) AS answered_within_target,
        quantileExactInclusiveIf(0.5)(assumeNotNull(response_ms) / 1000, isNotNull(response_ms)) AS median_first_response_s,
        quantileExactInclusiveIf(0.9)(assumeNotNull(response_ms) / 1000, isNotNull(response_ms)) AS p90_first_response_s,
        uniqExact(author_id) AS authors
    FROM {db}.post_first_response
    GROUP BY day, unit
)
WHERE authors >= {min_group_size};

-- Participation pyramid (Nielsen 90-9-1) per unit and day: active people who made no
-- contribution (observers: only viewed, reacted, voted, joined), contributors, and heavy
-- contributors (at least config 'heavy_contributions', TEILHABE_HEAVY_CONTRIBUTIONS, that day).
-- Contributions: posts, replies, ideas, idea comments, shares. Group: all active people.
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
HAVING count() >= {min_group_size};

-- Engagement against its seasonal baseline (docs/metrics.md), one rule at two grains: the
-- baseline of a period (a UTC day here, a stream window in window_baseline_ratio) is the mean
-- of the unit's events in the same period of each of the 4 weeks before. A past period with
-- events of other units but none of this unit counts 0; a past period without any event at
-- all (the pipeline was down, or nobody was active) is missing, and a missing week means no
-- baseline (no row), never 0: a week of downtime must not hide a drop. ratio = events /
-- baseline_events, NULL when the baseline is 0. Day grain: the facts, late events included.
-- Group: the unit's active people.
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
WHERE c.people >= {min_group_size};

-- The same rule per closed stream window (the live twin: the gauges
-- teilhabe_engagement_baseline_ratio / _events read the newest window of it): a window's
-- events against the same window of each of the 4 weeks before; a week whose window holds no
-- closed rows at all is missing (no baseline). On-time events only (the windows'); group: the
-- unit's active people in the window (as engagement_windows).
CREATE OR REPLACE VIEW {db}.window_baseline_ratio AS
SELECT c.window_start AS window_start, c.window_s AS window_s, c.unit AS unit,
       c.events AS events,
       p.events / 4 AS baseline_events,
       if(p.events = 0, NULL, c.events / (p.events / 4)) AS ratio
FROM {db}.engagement_windows AS c
INNER JOIN
(
    SELECT window_s, addWeeks(window_start, w) AS target
    FROM (SELECT DISTINCT window_s, window_start FROM {db}.engagement_window_partials)
    ARRAY JOIN [1, 2, 3, 4] AS w
    GROUP BY window_s, target
    HAVING count() = 4
) AS h ON c.window_s = h.window_s AND c.window_start = h.target
LEFT JOIN
(
    SELECT window_s, addWeeks(window_start, w) AS target, unit, sum(events) AS events
    FROM {db}.engagement_window_partials FINAL ARRAY JOIN [1, 2, 3, 4] AS w
    GROUP BY window_s, target, unit
) AS p ON c.window_s = p.window_s AND c.window_start = p.target AND c.unit = p.unit;

-- DAU / WAU / MAU and stickiness per unit and day: distinct active people that day, in the 7
-- and in the 28 days ending that day; stickiness = DAU / MAU. Group: DAU.
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
WHERE dau >= greatest(1, {min_group_size});

-- Boundary spanners per unit and day (docs/design.md): people who interacted (sent or received)
-- with people of at least config 'boundary_spanner_units' (TEILHABE_BOUNDARY_SPANNER_UNITS,
-- default 3) other units that day; 'unknown' is not a unit. Group: the unit's active people.
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
WHERE a.active_users >= {min_group_size};

-- Unit diversity of a space per day (Blau 1977): 1 - sum of p_i^2 over the units of the
-- space's active people; normalised by its maximum (K - 1) / K, K = the units active in the
-- whole org that day (NULL when K = 1). Group: the space's active people.
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
WHERE s.people >= {min_group_size};

-- Participation inequality per unit and day over the contributions of the unit's active
-- people (observers count 0): Gini coefficient, share of the contributions made by the top
-- 10 % of people (at least one), and the CHAOSS contributor absence factor (the fewest people
-- who together made at least half of the contributions). NULL without contributions.
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
WHERE people >= {min_group_size};

-- Behavioural personas over the 28 days ending on each day, after SWOOP Analytics: made =
-- posts + replies + reactions given, received = replies + reactions received from others.
-- Observer: active, made nothing. With r = config 'persona_ratio' (TEILHABE_PERSONA_RATIO,
-- default 2; SWOOP publishes no cut-off): catalyst = received >= r * made; responder /
-- broadcaster = made >= r * received, mostly replies and reactions / mostly original posts;
-- engager = in between (made and received in balance). Counted per unit of the person's own
-- events; group: the unit's people active in those 28 days.
CREATE OR REPLACE VIEW {db}.persona_28d AS
SELECT d AS day, unit,
       countIf(made = 0) AS observers,
       countIf(made > 0 AND received < r * made AND made < r * received) AS engagers,
       countIf(made > 0 AND received >= r * made) AS catalysts,
       countIf(made > 0 AND received < r * made AND made >= r * received AND posts * 2 <= made) AS responders,
       countIf(made > 0 AND received < r * made AND made >= r * received AND posts * 2 > made) AS broadcasters
FROM
(
    SELECT d, person, anyIf(unit_d, active_d = 1) AS unit, sum(posts_d) AS posts,
           sum(made_d) AS made, sum(received_d) AS received,
           (SELECT toFloat64OrDefault(any(value), toFloat64(2)) FROM {db}.config FINAL WHERE key = 'persona_ratio') AS r
    FROM
    (
        SELECT day + n AS d, person, unit_d, posts_d, made_d, received_d, active_d
        FROM
        (
            SELECT day, actor_id AS person, actor_unit AS unit_d,
                   countIf(event_type = 'post_created') AS posts_d,
                   countIf(event_type IN ('post_created', 'reply_created', 'reaction_added')) AS made_d,
                   0 AS received_d, 1 AS active_d
            FROM {db}.events FINAL GROUP BY day, person, unit_d
            UNION ALL
            SELECT day, assumeNotNull(target_actor_id) AS person, '' AS unit_d, 0 AS posts_d,
                   0 AS made_d, count() AS received_d, 0 AS active_d
            FROM {db}.events FINAL
            WHERE event_type IN ('reply_created', 'reaction_added')
              AND target_actor_id IS NOT NULL AND target_actor_id != actor_id
            GROUP BY day, person
        )
        ARRAY JOIN range(28) AS n
    )
    WHERE d <= (SELECT max(day) FROM {db}.events FINAL)
    GROUP BY d, person
    HAVING max(active_d) = 1
)
GROUP BY d, unit
HAVING count() >= {min_group_size};

-- Growth and retention per unit and day (CHAOSS): active people; new members (a
-- member_joined that day); first-time contributors (their first contribution in the facts
-- was that day; unit of that contribution); returning users (active that day and on any of
-- the 28 days before); dormant users (CHAOSS "Inactive Contributors": people of the unit
-- active in the 28 days before the last 28 days, but not in the last 28 days up to that day).
-- Group: the unit's active people.
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
WHERE a.active_users >= {min_group_size};

-- Ideation per day and unit of the ideas' authors: ideas submitted; votes and comments on the
-- unit's ideas (by the idea's author unit, i.e. the target) and from how many other units they
-- came. Group: the unit's people among the day's idea authors and the authors voted or
-- commented on.
CREATE OR REPLACE VIEW {db}.daily_ideation AS
SELECT day, unit, ideas, votes, comments, voting_units, commenting_units
FROM
(
    SELECT day, unit,
           countIf(kind = 'idea_submitted') AS ideas,
           countIf(kind = 'idea_voted') AS votes,
           countIf(kind = 'idea_commented') AS comments,
           uniqExactIf(other_unit, kind = 'idea_voted' AND other_unit != unit) AS voting_units,
           uniqExactIf(other_unit, kind = 'idea_commented' AND other_unit != unit) AS commenting_units,
           uniqExact(person) AS people
    FROM
    (
        SELECT day, actor_unit AS unit, event_type AS kind, actor_id AS person, '' AS other_unit
        FROM {db}.events FINAL WHERE event_type = 'idea_submitted'
        UNION ALL
        SELECT day, ifNull(target_unit, 'unknown') AS unit, event_type AS kind,
               assumeNotNull(target_actor_id) AS person, actor_unit AS other_unit
        FROM {db}.events FINAL
        WHERE event_type IN ('idea_voted', 'idea_commented') AND target_actor_id IS NOT NULL
    )
    GROUP BY day, unit
)
WHERE people >= {min_group_size};

-- Idea status funnel per day of submission and unit of the author: ideas submitted, and how
-- many of them ever reached each status (idea_status_changed on the idea's content_id), with
-- the median days from submission to the first decision (accepted or rejected). Group: the
-- distinct authors.
CREATE OR REPLACE VIEW {db}.idea_funnel AS
SELECT day, unit, submitted, in_review, accepted, rejected, implemented, median_days_to_decision
FROM
(
    SELECT i.day AS day, i.unit AS unit, count() AS submitted,
           countIf(has(s.statuses, 'in_review')) AS in_review,
           countIf(has(s.statuses, 'accepted')) AS accepted,
           countIf(has(s.statuses, 'rejected')) AS rejected,
           countIf(has(s.statuses, 'implemented')) AS implemented,
           quantileExactInclusiveIf(0.5)((s.decided_ms - i.ts_ms) / 86400000, s.decided_ms > 0) AS median_days_to_decision,
           uniqExact(i.author) AS authors
    FROM
    (
        SELECT day, actor_unit AS unit, actor_id AS author, assumeNotNull(content_id) AS iid, ts_ms
        FROM {db}.events FINAL WHERE event_type = 'idea_submitted' AND content_id IS NOT NULL
    ) AS i
    LEFT JOIN
    (
        SELECT assumeNotNull(content_id) AS iid, groupUniqArray(assumeNotNull(idea_status)) AS statuses,
               minIf(ts_ms, idea_status IN ('accepted', 'rejected')) AS decided_ms
        FROM {db}.events FINAL
        WHERE event_type = 'idea_status_changed' AND content_id IS NOT NULL AND idea_status IS NOT NULL
        GROUP BY iid
    ) AS s ON i.iid = s.iid
    GROUP BY day, unit
)
WHERE authors >= {min_group_size};

-- Cohorts (any directory attribute list 'cohorts', e.g. the community of digitisers) per day:
-- members in the directory, members active that day, active rate, and reach: the distinct
-- other units (not the member's own, not 'unknown') the cohort's members interacted with.
-- Group: the cohort's active members.
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
WHERE a.active_users >= {min_group_size};

-- Engagement per space and platform and day: active people and events, contributions.
-- Group: the space's active people on that platform.
CREATE OR REPLACE VIEW {db}.daily_active_by_space AS
SELECT day, space_id, platform, active_users, events, contributions
FROM
(
    SELECT day, ifNull(space_id, '') AS space_id, ifNull(platform, '') AS platform,
           uniqExact(actor_id) AS active_users, count() AS events,
           countIf(event_type IN {contribution_types}) AS contributions
    FROM {db}.events FINAL
    GROUP BY day, space_id, platform
)
WHERE active_users >= {min_group_size};

-- Active people per platform and day ('' when the event names none): the source of the gauge
-- teilhabe_platform_active_users. Group: the platform's active people that day.
CREATE OR REPLACE VIEW {db}.daily_active_by_platform AS
SELECT day, platform, active_users
FROM
(
    SELECT day, ifNull(platform, '') AS platform, uniqExact(actor_id) AS active_users
    FROM {db}.events FINAL
    GROUP BY day, platform
)
WHERE active_users >= {min_group_size};

-- Community health per unit and day (SWOOP): people active in the 28 days ending that day /
-- people active at least once in the 365 days ending that day. Group: the latter.
CREATE OR REPLACE VIEW {db}.daily_community_health AS
SELECT d AS day, unit, active_28d, active_365d, active_28d / active_365d AS health
FROM
(
    SELECT active_day + n AS d, unit,
           uniqExactIf(actor_id, n < 28) AS active_28d,
           uniqExact(actor_id) AS active_365d
    FROM
    (
        SELECT DISTINCT day AS active_day, actor_unit AS unit, actor_id FROM {db}.events FINAL
    )
    ARRAY JOIN range(365) AS n
    GROUP BY d, unit
)
WHERE d <= (SELECT max(day) FROM {db}.events FINAL)
  AND d IN (SELECT DISTINCT day FROM {db}.events FINAL)
  AND active_365d >= {min_group_size};

-- Headcount per unit in the directory mirror (directory_people), the denominator of adoption
-- and the source of the gauge teilhabe_directory_headcount. Group: the unit's people.
CREATE OR REPLACE VIEW {db}.unit_headcount AS
SELECT unit, count() AS people
FROM {db}.directory_people FINAL
GROUP BY unit
HAVING people >= {min_group_size};
