-- The spec's tables, as views over ours, so anything written against the spec's schema works.
CREATE VIEW IF NOT EXISTS {database}.`035_sequential_messaging_engine_configs` AS
SELECT
    id,
    workspace_id,
    campaign_id,
    config,
    status,
    created_at,
    updated_at,
    version
FROM {database}.configs FINAL
WHERE (workspace_id, id, version) IN (
    SELECT workspace_id, id, max(version) FROM {database}.configs GROUP BY workspace_id, id
);

CREATE VIEW IF NOT EXISTS {database}.`035_sequential_messaging_engine_activities` AS
SELECT
    activity_id AS id,
    config_id,
    workspace_id,
    type AS activity_type,
    toJSONString(map(
        'user_id', user_id, 'step_id', step_id, 'channel', channel, 'arm', arm,
        'command_id', command_id, 'event_id', event_id, 'event_type', event_type,
        'reason_code', reason_code, 'value', toString(value), 'cost', toString(cost),
        'details', details
    )) AS details,
    occurred_at AS created_at
FROM {database}.activities FINAL;

CREATE VIEW IF NOT EXISTS {database}.`035_sequential_messaging_engine_metrics` AS
SELECT
    concat(config_id, '/', toString(toDate(occurred_at))) AS id,
    config_id,
    workspace_id,
    toDate(occurred_at) AS date,
    toJSONString(map(
        'enrolled', toFloat64(uniqExactIf(user_id, type = 'enrolled')),
        'sent', toFloat64(countIf(type = 'command_emitted')),
        'delivered', toFloat64(countIf(type = 'feedback' AND event_type = 'delivered')),
        'opened', toFloat64(countIf(type = 'feedback' AND event_type = 'opened')),
        'clicked', toFloat64(countIf(type = 'feedback' AND event_type = 'clicked')),
        'converted', toFloat64(countIf(type = 'conversion')),
        'revenue', sumIf(value, type = 'conversion'),
        'unsubscribed', toFloat64(countIf(type = 'feedback' AND event_type = 'unsubscribed')),
        'bounced', toFloat64(countIf(type = 'feedback' AND event_type = 'bounced')),
        'cost', sumIf(cost, type = 'command_emitted')
    )) AS metrics,
    max(occurred_at) AS created_at
FROM {database}.activities FINAL
WHERE config_id != ''
GROUP BY workspace_id, config_id, date;
