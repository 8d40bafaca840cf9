-- Applied after 0001_initial.sql only where the timescaledb extension is loaded:
-- hypertables, compression of old chunks and retention of derived data.

CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('candles', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
SELECT create_hypertable('indicators', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
SELECT create_hypertable('ml_features', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
SELECT create_hypertable('data_quality_metrics', by_range('time', INTERVAL '7 days'), migrate_data => TRUE);

ALTER TABLE candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol, timeframe');
ALTER TABLE indicators SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol, timeframe');
ALTER TABLE ml_features SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol, timeframe');

SELECT add_compression_policy('candles', INTERVAL '7 days');
SELECT add_compression_policy('indicators', INTERVAL '7 days');
SELECT add_compression_policy('ml_features', INTERVAL '7 days');

SELECT add_retention_policy('ml_features', INTERVAL '365 days');
SELECT add_retention_policy('data_quality_metrics', INTERVAL '90 days');
