-- After 0008_bar_history.sql on TimescaleDB: bar_versions becomes a hypertable by bar open
-- time (as candles), compressed after 7 days, segmented by instrument like candles (0005).
-- Revisions arrive within the allowed lateness (seconds to minutes), long before a chunk is
-- compressed. Untested here: the test machine's PostgreSQL has no timescaledb extension.

SELECT create_hypertable('bar_versions', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
ALTER TABLE bar_versions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol, timeframe',
    timescaledb.compress_orderby = 'time, revision'
);
SELECT add_compression_policy('bar_versions', INTERVAL '7 days');
