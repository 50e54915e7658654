-- The directory mirror's headcount (docs/metrics.md). `directory_people` needs no new column:
-- the worker writes it on change and removes leavers (a tombstone on the compacted directory
-- topic) with a lightweight DELETE (pipeline/sinks/directory.py), so every view over
-- `directory_people FINAL` leaves them out as it is.

-- People per unit in the directory mirror, units below k people left out. The source of the
-- gauge teilhabe_directory_headcount (pipeline/ops/gauges.py), so gauge and SQL cannot disagree.
-- IF NOT EXISTS: an earlier migration that defines the view keeps its definition.
CREATE VIEW IF NOT EXISTS {db}.unit_headcount AS
SELECT unit, people
FROM
(
    SELECT unit, count() AS people FROM {db}.directory_people FINAL GROUP BY unit
)
WHERE people >= {min_group_size};
