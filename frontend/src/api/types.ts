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

export interface SymbolInfo {
  symbol: string;
  exchange: string;
  asset_type: string;
  active: boolean;
  created_at: string;
}

/** One OHLCV bar; `time` is its open time in Unix seconds. */
export interface Bar {
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  final: boolean;
  revision: number;
  open_time?: string;
  quote_volume?: number;
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
  symbol: string;
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
  symbol: string;
  timeframe: string;
  rows: FeatureRow[];
}

export interface Anomaly {
  check: string;
  time: string;
  detail: string;
}

export interface Quality {
  symbol: string;
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
  symbol: string;
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

/** An RFC 9457 problem document, as every gateway error is. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: { field: string; message: string }[];
}
