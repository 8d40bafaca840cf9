-- AnalyticsService.Subscribe's replay pages through indicators in (time, exchange, symbol,
-- timeframe) order across instruments and reads data_quality_metrics by time range. Until
-- 0005 the primary keys led with time and served both; the instrument-first keys of 0005
-- serve per-instrument range queries only, so without these indexes every replay page would
-- scan the whole table. A time-only index is enough (the planner bounds the keyset by time
-- and sorts each instant's few rows) and is the cheapest to keep up on every commit.
-- Hypertables (TimescaleDB) already have a time index per chunk, and their compressed chunks
-- are best left alone, so they are skipped.
DO $$
DECLARE
    hypertables TEXT[] := '{}';
BEGIN
    IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
        EXECUTE 'SELECT coalesce(array_agg(hypertable_name::text), ''{}'') '
            'FROM timescaledb_information.hypertables' INTO hypertables;
    END IF;
    IF NOT 'indicators' = ANY (hypertables) THEN
        CREATE INDEX indicators_time ON indicators (time);
    END IF;
    IF NOT 'data_quality_metrics' = ANY (hypertables) THEN
        CREATE INDEX data_quality_metrics_time ON data_quality_metrics (time);
    END IF;
END
$$;
