-- Daily per (workspace, config, day, arm, channel, step) metrics, recomputed from
-- `activities FINAL` for every day that received rows (so each activity id counts once),
-- and read by the metrics route and the dashboard instead of scanning activities.
CREATE TABLE IF NOT EXISTS {database}.daily_rollup
(
    workspace_id  LowCardinality(String),
    config_id     LowCardinality(String),
    day           Date,
    arm           LowCardinality(String),
    channel       LowCardinality(String),
    step_id       LowCardinality(String),
    enrolled      UInt64,
    sent          UInt64,
    delivered     UInt64,
    opened        UInt64,
    clicked       UInt64,
    conversions   UInt64,
    revenue       Float64,
    unsubscribed  UInt64,
    bounced       UInt64,
    suppressed    UInt64,
    cost          Float64,
    computed_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (workspace_id, config_id, day, arm, channel, step_id);
