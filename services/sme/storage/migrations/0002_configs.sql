-- Every version of every sequence configuration, as published on the config topic: the
-- analysts' mirror and the source of the API's version history.
CREATE TABLE IF NOT EXISTS {database}.configs
(
    id           String,
    workspace_id LowCardinality(String),
    campaign_id  String,
    name         String,
    status       LowCardinality(String),
    version      UInt32,
    created_at   DateTime64(3, 'UTC'),
    updated_at   DateTime64(3, 'UTC'),
    config       String,
    recorded_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(recorded_at)
ORDER BY (workspace_id, id, version);
