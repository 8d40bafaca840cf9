-- Data-quality inputs. The bar service counts, per bar, the trades of its minutes dropped as
-- duplicates and those that arrived out of order (tickmesh.v2.Bar duplicate_trades and
-- out_of_order_trades); bars stored before this migration read as 0. The analytics service
-- records when it received the newest bar of an assessment, so GetQuality can tell a stream
-- that stopped (stale) from one that replays old data (judged by its own clock).
--
-- No .timescale.sql companion: plain ALTER TABLE works on hypertables, and TimescaleDB 2.6+
-- adds a NOT NULL column with a constant default even to compressed ones (candles is).

ALTER TABLE candles ADD COLUMN duplicate_trades INTEGER NOT NULL DEFAULT 0;
ALTER TABLE candles ADD COLUMN out_of_order_trades INTEGER NOT NULL DEFAULT 0;
ALTER TABLE data_quality_metrics ADD COLUMN received_at TIMESTAMPTZ;
