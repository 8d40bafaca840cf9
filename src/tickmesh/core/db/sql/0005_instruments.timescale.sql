-- After 0005_instruments.sql on TimescaleDB: compression back on, segmented by instrument.

ALTER TABLE candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
ALTER TABLE indicators SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
ALTER TABLE ml_features SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');

SELECT add_compression_policy('candles', INTERVAL '7 days');
SELECT add_compression_policy('indicators', INTERVAL '7 days');
SELECT add_compression_policy('ml_features', INTERVAL '7 days');
