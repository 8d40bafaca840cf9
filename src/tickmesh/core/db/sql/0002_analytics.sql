-- The analytics service: where its consumption of BarService.Subscribe stands, written in
-- the same transaction as the rows it produced, and (symbol, timeframe, time) indexes for
-- its range and latest-row queries (the seed's keys lead with time).

CREATE TABLE analytics_consumer_state (
    consumer        TEXT PRIMARY KEY,
    last_change_id  BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX indicators_symbol_timeframe_time ON indicators (symbol, timeframe, time);
CREATE INDEX ml_features_symbol_timeframe_time ON ml_features (symbol, timeframe, time);
CREATE INDEX data_quality_metrics_symbol_timeframe_time
    ON data_quality_metrics (symbol, timeframe, time);
