-- After 0009_analytics_history.sql on TimescaleDB: the version tables become hypertables by
-- commit time (old versions compress; retention is the service's periodic delete, see
-- TICKMESH_HISTORY_RETENTION_DAYS). Hypertables need the partitioning column in every unique
-- index, so their primary keys gain committed_at. The update log keeps its plain table: its
-- position key is what Replay pages by.

ALTER TABLE indicator_versions DROP CONSTRAINT indicator_versions_pkey;
ALTER TABLE indicator_versions ADD PRIMARY KEY (exchange, symbol, timeframe, time, version_id, committed_at);
ALTER TABLE feature_versions DROP CONSTRAINT feature_versions_pkey;
ALTER TABLE feature_versions ADD PRIMARY KEY (exchange, symbol, timeframe, time, version_id, committed_at);
ALTER TABLE quality_versions DROP CONSTRAINT quality_versions_pkey;
ALTER TABLE quality_versions ADD PRIMARY KEY (exchange, symbol, timeframe, time, version_id, committed_at);

SELECT create_hypertable('indicator_versions', by_range('committed_at', INTERVAL '1 day'), migrate_data => TRUE);
SELECT create_hypertable('feature_versions', by_range('committed_at', INTERVAL '1 day'), migrate_data => TRUE);
SELECT create_hypertable('quality_versions', by_range('committed_at', INTERVAL '7 days'), migrate_data => TRUE);

ALTER TABLE indicator_versions SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
ALTER TABLE feature_versions SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
ALTER TABLE quality_versions SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');

SELECT add_compression_policy('indicator_versions', INTERVAL '7 days');
SELECT add_compression_policy('feature_versions', INTERVAL '7 days');
SELECT add_compression_policy('quality_versions', INTERVAL '7 days');
