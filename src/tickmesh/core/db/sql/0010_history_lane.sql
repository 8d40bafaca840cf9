-- The bar service's history lane (issue 14, item 5): trades older than a live symbol's retained
-- window, from `tickmesh import --from --to`, are built beside the live engine. Its head per
-- instrument (dedup ids, watermark, frontier, last closes, forming bars) is written in the same
-- group commit as the candles and the acknowledged stream sequences, so a bar service killed
-- mid-backfill loses nothing it acknowledged.
CREATE TABLE bar_history_state (
    exchange    VARCHAR(20) NOT NULL,
    symbol      VARCHAR(20) NOT NULL,
    state       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol)
);
