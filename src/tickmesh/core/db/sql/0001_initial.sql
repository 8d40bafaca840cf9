-- The seed's schema plus DESIGN section 5: candles gain quote_volume, trade_count, vwap,
-- revision and a change id (the resume point of BarService.Subscribe); users,
-- refresh_tokens and alert_events; the bar service's ingest state and quarantine.

CREATE TABLE symbols (
    id          SERIAL PRIMARY KEY,
    symbol      VARCHAR(20) NOT NULL UNIQUE,
    exchange    VARCHAR(20) NOT NULL,
    asset_type  VARCHAR(20) NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE SEQUENCE candle_change_seq AS BIGINT;

CREATE TABLE candles (
    time          TIMESTAMPTZ NOT NULL,
    symbol        VARCHAR(20) NOT NULL,
    timeframe     VARCHAR(10) NOT NULL,
    exchange      VARCHAR(20) NOT NULL,
    open          DOUBLE PRECISION NOT NULL,
    high          DOUBLE PRECISION NOT NULL,
    low           DOUBLE PRECISION NOT NULL,
    close         DOUBLE PRECISION NOT NULL,
    volume        DOUBLE PRECISION NOT NULL,
    quote_volume  DOUBLE PRECISION NOT NULL,
    trade_count   BIGINT NOT NULL,
    vwap          DOUBLE PRECISION NOT NULL,
    revision      INTEGER NOT NULL DEFAULT 0,
    change_id     BIGINT NOT NULL DEFAULT nextval('candle_change_seq'),
    -- (symbol, timeframe, time) rather than the seed's (time, symbol, timeframe): the same
    -- key, but it also serves every range query, so no second index slows the bulk writes.
    PRIMARY KEY (symbol, timeframe, time)
);
-- change ids grow with insertion order, so a BRIN index finds a resume point for a
-- fraction of a B-tree's cost on every bulk write.
CREATE INDEX candles_change_id ON candles USING brin (change_id);

CREATE TABLE indicators (
    time            TIMESTAMPTZ NOT NULL,
    symbol          VARCHAR(20) NOT NULL,
    timeframe       VARCHAR(10) NOT NULL,
    rsi             DOUBLE PRECISION,
    macd            DOUBLE PRECISION,
    macd_signal     DOUBLE PRECISION,
    macd_histogram  DOUBLE PRECISION,
    bb_upper        DOUBLE PRECISION,
    bb_middle       DOUBLE PRECISION,
    bb_lower        DOUBLE PRECISION,
    sma_20          DOUBLE PRECISION,
    sma_50          DOUBLE PRECISION,
    sma_100         DOUBLE PRECISION,
    sma_200         DOUBLE PRECISION,
    ema_12          DOUBLE PRECISION,
    ema_26          DOUBLE PRECISION,
    ema_50          DOUBLE PRECISION,
    vwap            DOUBLE PRECISION,
    stoch_k         DOUBLE PRECISION,
    stoch_d         DOUBLE PRECISION,
    atr             DOUBLE PRECISION,
    adx             DOUBLE PRECISION,
    volume_sma      DOUBLE PRECISION,
    PRIMARY KEY (time, symbol, timeframe)
);

CREATE TABLE ml_features (
    time             TIMESTAMPTZ NOT NULL,
    symbol           VARCHAR(20) NOT NULL,
    timeframe        VARCHAR(10) NOT NULL,
    feature_version  VARCHAR(10) NOT NULL,
    features         JSONB NOT NULL,
    PRIMARY KEY (time, symbol, timeframe)
);

CREATE TABLE data_quality_metrics (
    time            TIMESTAMPTZ NOT NULL,
    symbol          VARCHAR(20) NOT NULL,
    timeframe       VARCHAR(10) NOT NULL,
    quality_score   DOUBLE PRECISION NOT NULL,
    checks_passed   INTEGER NOT NULL,
    checks_failed   INTEGER NOT NULL,
    passed_checks   TEXT[] NOT NULL DEFAULT '{}',
    failed_checks   TEXT[] NOT NULL DEFAULT '{}',
    anomalies       JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (time, symbol, timeframe)
);

CREATE TABLE users (
    id             SERIAL PRIMARY KEY,
    username       VARCHAR(64) NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           VARCHAR(10) NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id           BIGSERIAL PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    family_id    UUID NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    replaced_by  BIGINT REFERENCES refresh_tokens (id)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE alerts (
    id              SERIAL PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    symbol          VARCHAR(20) NOT NULL,
    condition       VARCHAR(50) NOT NULL,
    threshold       DOUBLE PRECISION NOT NULL,
    parameters      JSONB NOT NULL DEFAULT '{}',
    channel         VARCHAR(20) NOT NULL,
    target          TEXT,
    active          BOOLEAN NOT NULL DEFAULT TRUE,
    cooldown        INTEGER NOT NULL DEFAULT 300,
    one_time        BOOLEAN NOT NULL DEFAULT FALSE,
    last_triggered  TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alerts_symbol_active ON alerts (symbol) WHERE active;

CREATE TABLE alert_events (
    id          BIGSERIAL PRIMARY KEY,
    alert_id    INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    bar_time    TIMESTAMPTZ NOT NULL,
    fired_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    value       DOUBLE PRECISION NOT NULL,
    message     TEXT NOT NULL,
    UNIQUE (alert_id, bar_time)
);

CREATE TABLE ingest_streams (
    stream_id       TEXT PRIMARY KEY,
    acked_sequence  BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The bar engine's durable state, written with every group commit: one small head per symbol
-- (dedup ids, watermark, forming bars) and the retained final bars that late trades may revise.
CREATE TABLE bar_engine_state (
    symbol      VARCHAR(20) PRIMARY KEY,
    exchange    VARCHAR(20) NOT NULL,
    state       JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE bar_engine_finals (
    symbol        VARCHAR(20) NOT NULL,
    timeframe     VARCHAR(10) NOT NULL,
    open_time_ns  BIGINT NOT NULL,
    exchange      VARCHAR(20) NOT NULL,
    bar           JSONB NOT NULL,
    PRIMARY KEY (symbol, timeframe, open_time_ns)
);

-- Suspect input kept out of bars but never lost: trades (id = trade id) and source bars
-- (id = open time in ns), with the reason.
CREATE TABLE quarantined_trades (
    exchange     VARCHAR(20) NOT NULL,
    symbol       VARCHAR(20) NOT NULL,
    kind         VARCHAR(12) NOT NULL CHECK (kind IN ('trade', 'source_bar')),
    trade_id     BIGINT NOT NULL,
    price        DOUBLE PRECISION NOT NULL,
    quantity     DOUBLE PRECISION NOT NULL,
    event_time   TIMESTAMPTZ NOT NULL,
    reason       TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, kind, trade_id)
);
