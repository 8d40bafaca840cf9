-- After 0011_candle_instrument_ids.sql on TimescaleDB: the rebuilt candles and bar_versions
-- become hypertables again (by bar open time, as in 0001 and 0008), compressed after 7 days,
-- segmented by instrument id and timeframe. Dropping the old hypertables dropped their
-- compression policies. Untested here: the test machine's PostgreSQL has no timescaledb.

SELECT create_hypertable('candles', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
ALTER TABLE candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'instrument_id, timeframe');
SELECT add_compression_policy('candles', INTERVAL '7 days');

SELECT create_hypertable('bar_versions', by_range('time', INTERVAL '1 day'), migrate_data => TRUE);
ALTER TABLE bar_versions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'instrument_id, timeframe',
    timescaledb.compress_orderby = 'time, revision'
);
SELECT add_compression_policy('bar_versions', INTERVAL '7 days');
