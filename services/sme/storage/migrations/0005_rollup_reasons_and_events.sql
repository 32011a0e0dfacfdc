-- Suppressions by reason code in the daily rollup, and a workspace-level daily rollup of event
-- intake (received, duplicates, dead-lettered): the error rate of SC-002. A dead-lettered
-- event could not be parsed, so it belongs to no sequence; its workspace is the one it named,
-- or '' when even that was unreadable.
ALTER TABLE {database}.daily_rollup
    ADD COLUMN IF NOT EXISTS suppressed_by_reason Map(LowCardinality(String), UInt64)
    AFTER suppressed;

-- Existing rollup rows lack the reasons: empty the rollup so the next refresh rebuilds it.
TRUNCATE TABLE IF EXISTS {database}.daily_rollup;

CREATE TABLE IF NOT EXISTS {database}.daily_events
(
    workspace_id  LowCardinality(String),
    day           Date,
    received      UInt64,
    duplicates    UInt64,
    rejected      UInt64,
    computed_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (workspace_id, day);

-- The rollup finds what arrived since its last refresh by `inserted_at`; each insert is one
-- part with a narrow `inserted_at` range, so a minmax index skips almost every granule.
ALTER TABLE {database}.activities
    ADD INDEX IF NOT EXISTS inserted_at_minmax inserted_at TYPE minmax GRANULARITY 1;

ALTER TABLE {database}.activities MATERIALIZE INDEX inserted_at_minmax;
