-- Candles and bar versions keyed by an integer instrument id (issue 12: the bulk upsert rate).
--
-- Since 0005 the two tables the bar service writes on every group commit carried two text
-- columns (exchange, symbol) in each row and at the head of their primary keys; the key's
-- width and text comparisons were most of the server's cost of a bulk COPY. Now each row holds
-- `instrument_id`, a number from `instruments`, and the keys are (instrument_id, timeframe,
-- time) and (instrument_id, timeframe, time, revision). Readers name an instrument as before
-- and look its id up (a scalar subquery on instruments' unique key) or join `instruments`.
--
-- `instruments` belongs to the bar service: it assigns an id the first time it stores a bar
-- of an instrument, registered or not (`tickmesh import` of any instrument, source bars), and
-- ids never change. It is not the collector's registry (`symbols`): a row here registers
-- nothing, so the registry's "never used" test and its listings stay as they were. No foreign
-- key from candles: a check per row would cost the COPY more than the key saves.
--
-- Rows stored before keep being served: every instrument found in candles or bar_versions
-- gets an id, and both tables are rebuilt in the new shape (key columns first, no dropped
-- columns left in their rows), in change-id order as live writes append them (what the BRIN
-- index on change_id relies on). On TimescaleDB the old hypertables go with their compression
-- policies; 0011_candle_instrument_ids.timescale.sql makes the new tables hypertables again,
-- compressed segmented by instrument id and timeframe.

CREATE TABLE instruments (
    id        SERIAL PRIMARY KEY,
    exchange  VARCHAR(20) NOT NULL,
    symbol    VARCHAR(20) NOT NULL,
    UNIQUE (exchange, symbol)
);

INSERT INTO instruments (exchange, symbol)
SELECT exchange, symbol FROM candles
UNION
SELECT exchange, symbol FROM bar_versions
ORDER BY exchange, symbol;

CREATE TABLE candles_0011 (
    instrument_id           INTEGER NOT NULL,
    timeframe               VARCHAR(10) NOT NULL,
    time                    TIMESTAMPTZ NOT NULL,
    open                    NUMERIC NOT NULL,
    high                    NUMERIC NOT NULL,
    low                     NUMERIC NOT NULL,
    close                   NUMERIC NOT NULL,
    volume                  NUMERIC NOT NULL,
    quote_volume            NUMERIC NOT NULL,
    trade_count             BIGINT NOT NULL,
    vwap                    DOUBLE PRECISION NOT NULL,
    revision                INTEGER NOT NULL DEFAULT 0,
    change_id               BIGINT NOT NULL DEFAULT nextval('candle_change_seq'),
    duplicate_trades        INTEGER NOT NULL DEFAULT 0,
    out_of_order_trades     INTEGER NOT NULL DEFAULT 0,
    taker_buy_volume        NUMERIC,
    taker_buy_quote_volume  NUMERIC
);
INSERT INTO candles_0011
SELECT i.id, c.timeframe, c.time, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
       c.trade_count, c.vwap, c.revision, c.change_id, c.duplicate_trades,
       c.out_of_order_trades, c.taker_buy_volume, c.taker_buy_quote_volume
FROM candles c JOIN instruments i ON i.exchange = c.exchange AND i.symbol = c.symbol
ORDER BY c.change_id;
DROP TABLE candles;
ALTER TABLE candles_0011 RENAME TO candles;
-- (instrument_id, timeframe, time) serves every range query too, as the old key did.
ALTER TABLE candles ADD PRIMARY KEY (instrument_id, timeframe, time);
-- As in 0001: change ids grow with insertion order, so BRIN finds a resume point cheaply.
CREATE INDEX candles_change_id ON candles USING brin (change_id);

CREATE TABLE bar_versions_0011 (
    instrument_id           INTEGER NOT NULL,
    timeframe               VARCHAR(10) NOT NULL,
    time                    TIMESTAMPTZ NOT NULL,
    open                    NUMERIC NOT NULL,
    high                    NUMERIC NOT NULL,
    low                     NUMERIC NOT NULL,
    close                   NUMERIC NOT NULL,
    volume                  NUMERIC NOT NULL,
    quote_volume            NUMERIC NOT NULL,
    taker_buy_volume        NUMERIC,
    taker_buy_quote_volume  NUMERIC,
    trade_count             BIGINT NOT NULL,
    vwap                    DOUBLE PRECISION NOT NULL,
    revision                INTEGER NOT NULL,
    duplicate_trades        INTEGER NOT NULL DEFAULT 0,
    out_of_order_trades     INTEGER NOT NULL DEFAULT 0,
    change_id               BIGINT NOT NULL,
    committed_at            TIMESTAMPTZ NOT NULL,
    message                 BYTEA
);
INSERT INTO bar_versions_0011
SELECT i.id, v.timeframe, v.time, v.open, v.high, v.low, v.close, v.volume, v.quote_volume,
       v.taker_buy_volume, v.taker_buy_quote_volume, v.trade_count, v.vwap, v.revision,
       v.duplicate_trades, v.out_of_order_trades, v.change_id, v.committed_at, v.message
FROM bar_versions v JOIN instruments i ON i.exchange = v.exchange AND i.symbol = v.symbol
ORDER BY v.change_id;
DROP TABLE bar_versions;
ALTER TABLE bar_versions_0011 RENAME TO bar_versions;
ALTER TABLE bar_versions ADD PRIMARY KEY (instrument_id, timeframe, time, revision);
-- The two indexes of 0008: commit-time ranges (BRIN) and replay pages by change id (B-tree).
CREATE INDEX bar_versions_committed_at ON bar_versions USING brin (committed_at);
CREATE INDEX bar_versions_change_id ON bar_versions (change_id);
