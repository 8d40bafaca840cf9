-- tickmesh.v2: an instrument is (exchange, symbol), and prices and volumes are exact.
--
-- * symbols: unique per (exchange, symbol), so BTCUSDT on Binance spot and on USD-M are two
--   rows; the venue's tick and step sizes when known.
-- * every table keyed by symbol gains the exchange in its key. Rows stored before keep the
--   venue their symbol was registered on (then the venue of its candles; Binance spot, the
--   old demo's venue, when neither is known).
-- * candles and quarantined trades hold prices and volumes as numeric. The float sums stored
--   before carry float error in their last digits ("607.1479999999992"); each converts to the
--   shortest decimal within 1e-12 of it relatively (607.148), which restores the exchange's
--   decimals: a float has about 15.9 significant digits, so no real digit is that small. Bars
--   gain the two taker-buy volumes of a Binance kline; rows stored before have them NULL.
-- On TimescaleDB, 0005_instruments.timescale-pre.sql decompresses the hypertables first and
-- 0005_instruments.timescale.sql turns compression back on, segmented by instrument.

ALTER TABLE symbols DROP CONSTRAINT symbols_symbol_key;
ALTER TABLE symbols ADD CONSTRAINT symbols_exchange_symbol_key UNIQUE (exchange, symbol);
ALTER TABLE symbols ADD COLUMN price_increment NUMERIC;
ALTER TABLE symbols ADD COLUMN quantity_increment NUMERIC;

-- The venue of each symbol seen before this migration: registered, else from its candles.
CREATE TEMPORARY TABLE legacy_venues ON COMMIT DROP AS
SELECT symbol, min(exchange) AS exchange FROM (
    SELECT symbol, exchange FROM symbols
    UNION ALL
    SELECT DISTINCT c.symbol, c.exchange FROM candles c
    WHERE NOT EXISTS (SELECT 1 FROM symbols s WHERE s.symbol = c.symbol)
) AS known
GROUP BY symbol;

CREATE FUNCTION pg_temp.exact_from_float(value DOUBLE PRECISION) RETURNS NUMERIC
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(
        (SELECT round(value::numeric, places) FROM generate_series(0, 18) AS places
         WHERE abs(round(value::numeric, places) - value::numeric) <= abs(value::numeric) * 1e-12
         ORDER BY places LIMIT 1),
        value::numeric)
$$;

-- candles: exact values, taker-buy volumes, keyed by instrument.
ALTER TABLE candles DROP CONSTRAINT candles_pkey;
ALTER TABLE candles
    ALTER COLUMN open TYPE NUMERIC USING pg_temp.exact_from_float(open),
    ALTER COLUMN high TYPE NUMERIC USING pg_temp.exact_from_float(high),
    ALTER COLUMN low TYPE NUMERIC USING pg_temp.exact_from_float(low),
    ALTER COLUMN close TYPE NUMERIC USING pg_temp.exact_from_float(close),
    ALTER COLUMN volume TYPE NUMERIC USING pg_temp.exact_from_float(volume),
    ALTER COLUMN quote_volume TYPE NUMERIC USING pg_temp.exact_from_float(quote_volume),
    ADD COLUMN taker_buy_volume NUMERIC,
    ADD COLUMN taker_buy_quote_volume NUMERIC;
ALTER TABLE candles ADD PRIMARY KEY (exchange, symbol, timeframe, time);

ALTER TABLE quarantined_trades
    ALTER COLUMN price TYPE NUMERIC USING pg_temp.exact_from_float(price),
    ALTER COLUMN quantity TYPE NUMERIC USING pg_temp.exact_from_float(quantity);

-- The analytics tables: exchange from the symbol's venue, keyed by instrument. The new
-- primary keys lead with the instrument, so they also serve the range queries the
-- (symbol, timeframe, time) indexes of 0002 served.
ALTER TABLE indicators ADD COLUMN exchange VARCHAR(20);
UPDATE indicators t SET exchange = v.exchange FROM legacy_venues v WHERE v.symbol = t.symbol;
UPDATE indicators SET exchange = 'binance_spot' WHERE exchange IS NULL;
ALTER TABLE indicators ALTER COLUMN exchange SET NOT NULL;
ALTER TABLE indicators DROP CONSTRAINT indicators_pkey;
ALTER TABLE indicators ADD PRIMARY KEY (exchange, symbol, timeframe, time);
DROP INDEX indicators_symbol_timeframe_time;

ALTER TABLE ml_features ADD COLUMN exchange VARCHAR(20);
UPDATE ml_features t SET exchange = v.exchange FROM legacy_venues v WHERE v.symbol = t.symbol;
UPDATE ml_features SET exchange = 'binance_spot' WHERE exchange IS NULL;
ALTER TABLE ml_features ALTER COLUMN exchange SET NOT NULL;
ALTER TABLE ml_features DROP CONSTRAINT ml_features_pkey;
ALTER TABLE ml_features ADD PRIMARY KEY (exchange, symbol, timeframe, time);
DROP INDEX ml_features_symbol_timeframe_time;

ALTER TABLE data_quality_metrics ADD COLUMN exchange VARCHAR(20);
UPDATE data_quality_metrics t SET exchange = v.exchange
    FROM legacy_venues v WHERE v.symbol = t.symbol;
UPDATE data_quality_metrics SET exchange = 'binance_spot' WHERE exchange IS NULL;
ALTER TABLE data_quality_metrics ALTER COLUMN exchange SET NOT NULL;
ALTER TABLE data_quality_metrics DROP CONSTRAINT data_quality_metrics_pkey;
ALTER TABLE data_quality_metrics ADD PRIMARY KEY (exchange, symbol, timeframe, time);
DROP INDEX data_quality_metrics_symbol_timeframe_time;

-- The bar engine's durable state (it already stored the exchange), keyed by instrument.
ALTER TABLE bar_engine_state DROP CONSTRAINT bar_engine_state_pkey;
ALTER TABLE bar_engine_state ADD PRIMARY KEY (exchange, symbol);
ALTER TABLE bar_engine_finals DROP CONSTRAINT bar_engine_finals_pkey;
ALTER TABLE bar_engine_finals ADD PRIMARY KEY (exchange, symbol, timeframe, open_time_ns);

-- Alerts watch an instrument.
ALTER TABLE alerts ADD COLUMN exchange VARCHAR(20);
UPDATE alerts t SET exchange = v.exchange FROM legacy_venues v WHERE v.symbol = t.symbol;
UPDATE alerts SET exchange = 'binance_spot' WHERE exchange IS NULL;
ALTER TABLE alerts ALTER COLUMN exchange SET NOT NULL;
DROP INDEX alerts_symbol_active;
CREATE INDEX alerts_instrument_active ON alerts (exchange, symbol) WHERE active;

DROP FUNCTION pg_temp.exact_from_float(DOUBLE PRECISION);
