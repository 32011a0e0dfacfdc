-- Every decision and observation of the engine, one row per activity id.
-- ReplacingMergeTree on the deterministic activity_id: a re-delivered row collapses at merge
-- time, and reports read with FINAL or GROUP BY activity_id, so duplicates never count twice.
CREATE TABLE IF NOT EXISTS {database}.activities
(
    activity_id    UUID,
    type           LowCardinality(String),
    workspace_id   LowCardinality(String),
    user_id        String,
    occurred_at    DateTime64(3, 'UTC'),
    config_id      LowCardinality(String),
    config_version UInt32,
    step_id        LowCardinality(String),
    channel        LowCardinality(String),
    arm            LowCardinality(String),
    command_id     String,
    event_id       String,
    event_type     LowCardinality(String),
    reason_code    LowCardinality(String),
    value          Float64,
    cost           Float64,
    details        String,
    inserted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (workspace_id, config_id, type, toDate(occurred_at), activity_id);
