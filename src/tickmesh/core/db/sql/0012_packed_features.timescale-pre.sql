-- Before 0012_packed_features.sql on TimescaleDB: compressed chunks cannot be updated in place
-- or take NOT NULL columns, so decompress the two feature tables and turn compression off;
-- 0012_packed_features.timescale.sql turns it back on with the same segments.

SELECT remove_compression_policy('ml_features', if_exists => TRUE);
SELECT remove_compression_policy('feature_versions', if_exists => TRUE);
SELECT decompress_chunk(chunk, if_compressed => TRUE) FROM show_chunks('ml_features') AS chunk;
SELECT decompress_chunk(chunk, if_compressed => TRUE) FROM show_chunks('feature_versions') AS chunk;
ALTER TABLE ml_features SET (timescaledb.compress = FALSE);
ALTER TABLE feature_versions SET (timescaledb.compress = FALSE);
