/** Price overlays and oscillator panes the chart can show. */

export const OVERLAYS = [
  { id: "sma_20", label: "SMA 20", columns: ["sma_20"], color: "#f5c542" },
  { id: "sma_50", label: "SMA 50", columns: ["sma_50"], color: "#4fa3f7" },
  { id: "sma_200", label: "SMA 200", columns: ["sma_200"], color: "#c77dff" },
  { id: "ema_12", label: "EMA 12", columns: ["ema_12"], color: "#2ec4b6" },
  { id: "ema_26", label: "EMA 26", columns: ["ema_26"], color: "#ff9f1c" },
  {
    id: "bollinger",
    label: "Bollinger",
    columns: ["bb_upper", "bb_middle", "bb_lower"],
    color: "#8d99ae",
  },
] as const;

export type OverlayId = (typeof OVERLAYS)[number]["id"];

export const PANES = [
  { id: "rsi", label: "RSI" },
  { id: "macd", label: "MACD" },
] as const;

export type PaneId = (typeof PANES)[number]["id"];

export type OverlayVisibility = Record<OverlayId, boolean>;
export type PaneVisibility = Record<PaneId, boolean>;

export const DEFAULT_OVERLAYS: OverlayVisibility = {
  sma_20: false,
  sma_50: false,
  sma_200: false,
  ema_12: false,
  ema_26: false,
  bollinger: false,
};

export const DEFAULT_PANES: PaneVisibility = { rsi: false, macd: false };
