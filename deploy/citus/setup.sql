-- Lays the service's tables out on the Citus cluster of the `citus` compose profile (docs/storage.md, "Scaling out").
-- Run on the coordinator after `flask db upgrade`; every step may run again.
\set ON_ERROR_STOP on

SELECT citus_set_coordinator_host('citus-coordinator', 5432);
SELECT citus_add_node('citus-worker-1', 5432);
SELECT citus_add_node('citus-worker-2', 5432);

-- Per-user data, sharded by user_id and co-located: a user's events, keys and metrics share a shard,
-- so the write path and the per-window calculation (GROUP BY user_id) run shard by shard.
SELECT create_distributed_table('events', 'user_id')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'events'::regclass);
SELECT create_distributed_table('event_keys', 'user_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'event_keys'::regclass);
SELECT create_distributed_table('user_activity_metrics', 'user_id', colocate_with => 'events')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'user_activity_metrics'::regclass);

-- Small, shared by every user: copied to every node.
SELECT create_reference_table('metrics_windows')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'metrics_windows'::regclass);
SELECT create_reference_table('calculation_runs')
WHERE NOT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'calculation_runs'::regclass);
