-- Erasures and their progress, without the erased user's id: one row when the gateway accepts
-- the request (state 1 'requested') and one when the sink has deleted the user's rows and
-- recomputed the rollup days they were counted in (state 2 'completed'). The highest state of
-- an erasure id wins, whatever order the two rows arrive in.
CREATE TABLE IF NOT EXISTS {database}.erasures
(
    workspace_id  LowCardinality(String),
    erasure_id    String,
    state         UInt8,
    requested_at  DateTime64(3, 'UTC'),
    completed_at  Nullable(DateTime64(3, 'UTC')),
    rows_deleted  UInt64 DEFAULT 0
)
ENGINE = ReplacingMergeTree(state)
ORDER BY (workspace_id, erasure_id);
