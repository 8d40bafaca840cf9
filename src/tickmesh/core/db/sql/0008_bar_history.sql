-- Bar revision history (issue 14): one row per stored version of a FINAL bar, revision 0 the
-- first final and 1.. its revisions, written in the same transaction as the `candles` upsert.
-- `committed_at` is when the version became known (the instant GetBars' as_of_ns and
-- BarService.Replay go by); `change_id` is the candle's change id of that write, so it is the
-- log position and grows with commit order.
-- Beside the plan's columns, the row keeps the two trade-quality counters of `candles` (so a
-- version converts to a complete tickmesh.v2.Bar) and `message`: the serialized Bar exactly as
-- live Subscribe published it (committed_at_ns and change_id set, no trace context). Replay
-- sends those bytes as they are, which is how a replay equals the live stream byte for byte
-- and how it reaches its speed.
CREATE TABLE bar_versions (
    exchange                VARCHAR(20) NOT NULL,
    symbol                  VARCHAR(20) NOT NULL,
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
    -- NULL for rows copied from `candles` below: no live message was ever logged for them.
    message                 BYTEA,
    PRIMARY KEY (exchange, symbol, timeframe, time, revision)
);
-- Commit times grow with insertion order: a BRIN index finds a time range for a fraction of
-- a B-tree's cost on every write.
CREATE INDEX bar_versions_committed_at ON bar_versions USING brin (committed_at);
-- Replay pages by change id (ORDER BY change_id LIMIT n): a BRIN index would make every page
-- sort the whole rest of the log, so this one is a B-tree. Ids grow, so each insert lands on
-- the rightmost leaf, the cheapest place a B-tree can be written.
CREATE INDEX bar_versions_change_id ON bar_versions (change_id);

-- Candles stored before this migration have no history: what they looked like before now is
-- unknown. Each gets one version, committed now, so as_of reads from now on are exact; and
-- bar_history_start records the instant before which as_of cannot be answered honestly
-- (GetBars refuses it with FAILED_PRECONDITION rather than answer from a partial history).
-- Retention raises it when it collapses older versions. No row: history is complete.
CREATE TABLE bar_history_start (
    only_row    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    started_at  TIMESTAMPTZ NOT NULL
);
INSERT INTO bar_history_start (started_at) SELECT now() WHERE EXISTS (SELECT 1 FROM candles);
INSERT INTO bar_versions (
    exchange, symbol, timeframe, time, open, high, low, close, volume, quote_volume,
    taker_buy_volume, taker_buy_quote_volume, trade_count, vwap, revision, duplicate_trades,
    out_of_order_trades, change_id, committed_at
)
SELECT exchange, symbol, timeframe, time, open, high, low, close, volume, quote_volume,
       taker_buy_volume, taker_buy_quote_volume, trade_count, vwap, revision, duplicate_trades,
       out_of_order_trades, change_id, now()
FROM candles;
