-- Teilhabe core tables (contract: table, view and column names are only ever added to).
-- Every table is written idempotently: a replay after a crash rewrites identical rows, and the
-- Replacing engines keep one of them. Read with FINAL (the views do).

CREATE TABLE IF NOT EXISTS {db}.config
(
    key   String,
    value String
)
ENGINE = ReplacingMergeTree
ORDER BY key;

-- Pseudonymised event facts: the system of record for analysts (user-day facts are a view).
-- One row per event_id; an on-time row (version 1) wins over a late duplicate (version 0).
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id          String,
    event_type        LowCardinality(String),
    ts_ms             Int64,
    occurred_at       DateTime64(3, 'UTC') MATERIALIZED fromUnixTimestamp64Milli(ts_ms, 'UTC'),
    day               Date MATERIALIZED toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC')),
    actor_id          String,
    actor_unit        LowCardinality(String),
    space_id          Nullable(String),
    platform          LowCardinality(Nullable(String)),
    target_actor_id   Nullable(String),
    target_unit       LowCardinality(Nullable(String)),
    content_id        Nullable(String),
    parent_content_id Nullable(String),
    root_content_id   Nullable(String),
    idea_status       LowCardinality(Nullable(String)),
    is_late           UInt8,
    version           UInt8,
    ingested_at       DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(fromUnixTimestamp64Milli(ts_ms, 'UTC'))
ORDER BY (toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC')), event_id)
TTL toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC')) + INTERVAL {ttl_days} DAY;

-- Closed event-time windows as each partition of the activity topic computed them. The
-- activity topic is partitioned by actor, so distinct actors add up across partitions.
CREATE TABLE IF NOT EXISTS {db}.engagement_window_partials
(
    window_start   DateTime('UTC'),
    window_s       UInt32,
    unit           LowCardinality(String),
    partition      UInt16,
    events         UInt64,
    events_by_type Map(LowCardinality(String), UInt64),
    active_users   UInt32,
    close_offset   Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (window_s, window_start, unit, partition);

-- Per-partition recovery points of the stream (see pipeline/windows.py).
CREATE TABLE IF NOT EXISTS {db}.stream_checkpoints
(
    consumer_group String,
    topic          String,
    partition      UInt16,
    offset         Int64,
    state          String,
    saved_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(offset)
ORDER BY (consumer_group, topic, partition);

-- Closed windows, all partitions merged; groups smaller than k people are left out.
CREATE OR REPLACE VIEW {db}.engagement_windows AS
SELECT
    window_start,
    window_s,
    unit,
    sum(active_users) AS active_users,
    sum(events) AS events,
    sumMap(events_by_type) AS events_by_type
FROM {db}.engagement_window_partials FINAL
GROUP BY window_start, window_s, unit
HAVING active_users >= (SELECT toUInt32OrDefault(any(value), toUInt32(5)) FROM {db}.config FINAL WHERE key = 'min_group_size');

-- User-day facts (pseudonymised): late events included, duplicates counted once.
CREATE OR REPLACE VIEW {db}.user_day_facts AS
SELECT
    day,
    actor_id,
    actor_unit AS unit,
    count() AS events,
    countIf(event_type IN ('post_created', 'reply_created', 'idea_submitted', 'idea_commented', 'share')) AS contributions,
    countIf(event_type = 'view') AS views,
    countIf(is_late = 1) AS late_events,
    sumMap(map(toString(event_type), toUInt64(1))) AS events_by_type
FROM {db}.events FINAL
GROUP BY day, actor_id, unit;
