-- List enrollments the gateway accepted, by client batch id, without the users' ids: a digest
-- of the batch's distinct users (and their attributes) and the counts it answered. A repeated
-- batch id answers the first acceptance again (same digest) or is refused (409); the first
-- row of a (workspace, sequence, batch) wins should two gateways race.
CREATE TABLE IF NOT EXISTS {database}.enrollment_batches
(
    workspace_id  LowCardinality(String),
    config_id     String,
    batch_id      String,
    digest        String,
    received      UInt32,
    accepted      UInt32,
    duplicates    UInt32,
    accepted_at   DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (workspace_id, config_id, batch_id);
