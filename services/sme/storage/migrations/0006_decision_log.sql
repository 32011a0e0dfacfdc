-- The latest decisions of a sequence, for the dashboard: the decision activities of the last
-- days ordered by time within (workspace, config), so "the newest 25" reads a few granules in
-- key order instead of a day of `activities`. Filled by a materialized view on every insert
-- into `activities` (columns named, so a later column of `activities` needs adding here too);
-- rows expire after 8 days (older windows read `activities`).
CREATE TABLE IF NOT EXISTS {database}.decision_log AS {database}.activities
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (workspace_id, config_id, occurred_at, activity_id)
TTL toDateTime(occurred_at) + INTERVAL 8 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.decision_log_feed TO {database}.decision_log
AS SELECT activity_id, type, workspace_id, user_id, occurred_at, config_id, config_version, step_id,
    channel, arm, command_id, event_id, event_type, reason_code, value, cost, details,
    inserted_at
FROM {database}.activities
WHERE config_id != '' AND type IN ('enrolled', 'command_emitted', 'message_suppressed',
    'step_deferred', 'step_skipped', 'step_branched', 'enrollment_exited', 'conversion');

-- Backfill what is already stored (a re-run only adds duplicates, which reads collapse).
INSERT INTO {database}.decision_log
SELECT activity_id, type, workspace_id, user_id, occurred_at, config_id, config_version, step_id,
    channel, arm, command_id, event_id, event_type, reason_code, value, cost, details,
    inserted_at
FROM {database}.activities
WHERE config_id != '' AND occurred_at >= now() - INTERVAL 8 DAY
  AND type IN ('enrolled', 'command_emitted', 'message_suppressed', 'step_deferred',
    'step_skipped', 'step_branched', 'enrollment_exited', 'conversion');
