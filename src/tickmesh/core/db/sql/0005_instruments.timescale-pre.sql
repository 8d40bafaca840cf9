-- Before 0005_instruments.sql on TimescaleDB: compressed chunks cannot change their column
-- types or keys, so decompress them and turn compression off; 0005_instruments.timescale.sql
-- turns it back on, segmented by instrument.

SELECT remove_compression_policy('candles', if_exists => TRUE);
SELECT remove_compression_policy('indicators', if_exists => TRUE);
SELECT remove_compression_policy('ml_features', if_exists => TRUE);
SELECT decompress_chunk(chunk, if_compressed => TRUE) FROM show_chunks('candles') AS chunk;
SELECT decompress_chunk(chunk, if_compressed => TRUE) FROM show_chunks('indicators') AS chunk;
SELECT decompress_chunk(chunk, if_compressed => TRUE) FROM show_chunks('ml_features') AS chunk;
ALTER TABLE candles SET (timescaledb.compress = FALSE);
ALTER TABLE indicators SET (timescaledb.compress = FALSE);
ALTER TABLE ml_features SET (timescaledb.compress = FALSE);
