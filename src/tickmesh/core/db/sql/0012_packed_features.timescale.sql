-- After 0012_packed_features.sql on TimescaleDB: the feature tables compress again, as before
-- (0005 and 0009 set these segments and policies).

ALTER TABLE ml_features SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
ALTER TABLE feature_versions SET (timescaledb.compress, timescaledb.compress_segmentby = 'exchange, symbol, timeframe');
SELECT add_compression_policy('ml_features', INTERVAL '7 days');
SELECT add_compression_policy('feature_versions', INTERVAL '7 days');
