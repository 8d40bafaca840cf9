// The gateway's JSON shapes (services/gateway/src/tickmesh/gateway/schemas.py).

export type Role = "viewer" | "trader" | "admin";

export interface TokenPair {
  access_token: string;
  token_type: "bearer";
  /** Seconds until the access token expires. */
  expires_in: number;
  refresh_token: string;
  refresh_expires_at: string;
}

export interface User {
  id: number;
  username: string;
  role: Role;
  disabled: boolean;
  created_at: string;
}

/** A registered instrument; `instrument` is its one text form, "<venue>:<symbol>". */
export interface SymbolInfo {
  instrument: string;
  /** The venue label, e.g. "binance_usdm". */
  exchange: string;
  symbol: string;
  asset_type: string;
  active: boolean;
  created_at: string;
  /** Tick size as an exact decimal string; null when unknown. */
  price_increment?: string | null;
  quantity_increment?: string | null;
}

/**
 * One OHLCV bar; `time` is its open time in Unix seconds. Prices and volumes are exact
 * decimal strings ("61700.8"), as the venue writes them: shown as they are, turned into
 * numbers only to draw.
 */
export interface Bar {
  time: number;
  open: string;
  high: string;
  low: string;
  close: string;
  volume: string;
  final: boolean;
  revision: number;
  open_time?: string;
  quote_volume?: string;
  taker_buy_volume?: string | null;
  taker_buy_quote_volume?: string | null;
  trade_count?: number;
  vwap?: number;
}

export interface IndicatorRow {
  time: number;
  rsi?: number | null;
  macd?: number | null;
  macd_signal?: number | null;
  macd_histogram?: number | null;
  bb_upper?: number | null;
  bb_middle?: number | null;
  bb_lower?: number | null;
  sma_20?: number | null;
  sma_50?: number | null;
  sma_100?: number | null;
  sma_200?: number | null;
  ema_12?: number | null;
  ema_26?: number | null;
  ema_50?: number | null;
  [name: string]: number | null | undefined;
}

export interface Chart {
  instrument: string;
  timeframe: string;
  bars: Bar[];
  indicators: IndicatorRow[] | null;
  warnings: string[];
}

export interface FeatureRow {
  time: number;
  feature_version: string;
  values: Record<string, number>;
}

export interface FeatureSeries {
  instrument: string;
  timeframe: string;
  rows: FeatureRow[];
}

export interface Anomaly {
  check: string;
  time: string;
  detail: string;
}

export interface Quality {
  instrument: string;
  timeframe: string;
  time: string;
  score: number;
  checks_passed: string[];
  checks_failed: string[];
  anomalies: Anomaly[];
}

export type AlertCondition =
  | "price_above"
  | "price_below"
  | "price_crossing"
  | "percent_change"
  | "rsi_above"
  | "rsi_below"
  | "macd_cross"
  | "volume_spike";

export interface AlertInput {
  /** "<venue>:<symbol>" */
  instrument: string;
  timeframe: string;
  condition: AlertCondition;
  threshold: number;
  direction?: "up" | "down" | "any";
  lookback_bars?: number;
  channel?: "websocket" | "webhook" | "email";
  target?: string | null;
  cooldown?: number;
  one_time?: boolean;
  active?: boolean;
}

export interface Alert extends Required<Omit<AlertInput, "target">> {
  id: number;
  user_id: number;
  target: string | null;
  last_triggered: string | null;
  created_at: string;
}

export interface AlertEvent {
  id: number;
  alert_id: number;
  bar_time: string;
  fired_at: string;
  value: number;
  message: string;
}

/** A market-data source as the collector reports it (`GET /api/v1/health`). */
export interface SourceHealth {
  /** A venue label (binance_spot, binance_usdm, yahoo) or another collector part. */
  source: string;
  state: "up" | "connecting" | "unreachable" | "degraded" | "idle" | string;
  error?: string | null;
  updated_at?: string | null;
}

export interface Health {
  status: "ok" | "degraded";
  components: Record<string, { status: string; latency_ms: number; detail?: string | null }>;
  sources: SourceHealth[];
}

/** An RFC 9457 problem document, as every gateway error is. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: { field: string; message: string }[];
}
