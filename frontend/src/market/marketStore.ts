/**
 * What the dashboard shows of the market: the instrument list, the chosen instrument
 * ("<venue>:<symbol>") and timeframe, its candles and indicators, the connection state,
 * quality and features. Bars change only through the pure merge functions in barMerge.ts.
 */
import { createStore, type StoreApi } from "zustand/vanilla";
import type { GatewayApi } from "../api/gateway";
import { ApiError, errorText } from "../api/http";
import type { Bar, FeatureRow, IndicatorRow, Quality, SymbolInfo } from "../api/types";
import { applyLiveBar, type BarChange, mergeHistory } from "./barMerge";
import { mergeIndicators } from "./indicatorMerge";
import type { ConnectionStatus } from "./liveFeed";
import {
  DEFAULT_OVERLAYS,
  DEFAULT_PANES,
  type OverlayId,
  type OverlayVisibility,
  type PaneId,
  type PaneVisibility,
} from "./overlays";
import { type Timeframe, timeframeSeconds } from "./timeframes";
import type { ReplayStatus } from "../replay/replayFeed";
import { defaultRange, type ReplayRange, rangeProblem } from "../replay/replayRange";

/** Live: the present, pushed as it happens. Replay: a past range played back. */
export type ChartMode = "live" | "replay";

export type LoadState = "idle" | "loading" | "ready" | "empty" | "error";

/** Bars of the history window read over REST. */
export const HISTORY_LIMIT = 500;

export interface MarketState {
  symbols: SymbolInfo[];
  symbolsState: LoadState;
  symbolsError: string | null;
  /** The chosen instrument's text form, e.g. "binance_usdm:BTCUSDT". */
  instrument: string | null;
  timeframe: Timeframe;

  bars: Bar[];
  /** The last change to `bars`, numbered, so the chart applies each one in order. */
  barsChange: { seq: number; change: BarChange };
  chartState: LoadState;
  chartError: string | null;
  indicators: IndicatorRow[];
  warnings: string[];
  connection: ConnectionStatus;
  /** Live bar messages received for the current instrument and timeframe. */
  liveUpdates: number;

  overlays: OverlayVisibility;
  panes: PaneVisibility;

  quality: Quality | null;
  qualityState: LoadState;
  features: FeatureRow | null;
  featuresState: LoadState;

  mode: ChartMode;
  /** The range and speed the replay form shows (and the address names). */
  replay: ReplayRange;
  /** Bumped by every Play: the replay sync (re)starts the stream when it changes. */
  replayRun: number;
  replayPaused: boolean;
  replayStatus: ReplayStatus;
  replayProblem: string | null;

  loadSymbols(): Promise<void>;
  selectInstrument(instrument: string): void;
  selectTimeframe(timeframe: Timeframe): void;
  loadHistory(): Promise<void>;
  applyLiveBars(instrument: string, timeframe: string, bars: Bar[]): { finals: number; gap: boolean };
  refreshIndicators(): Promise<void>;
  /** Re-read quality (as of `asOf` in a replay). */
  refreshQuality(asOf?: string): Promise<void>;
  /** Re-read the latest features (as of `asOf` in a replay). */
  refreshFeatures(asOf?: string): Promise<void>;
  setConnection(status: ConnectionStatus): void;
  toggleOverlay(id: OverlayId): void;
  togglePane(id: PaneId): void;

  setReplayRange(range: Partial<ReplayRange>): void;
  /** Play the form's range from its start (false, with the reason shown, if it cannot). */
  playReplay(): boolean;
  setReplayPaused(paused: boolean): void;
  leaveReplay(): void;
  setReplayStatus(status: ReplayStatus): void;
  setReplayProblem(detail: string | null): void;
  /** The chart as it was known when the replay starts: bars before `from`, as of `from`. */
  loadReplayHistory(): Promise<void>;
  applyIndicatorRow(instrument: string, timeframe: string, row: IndicatorRow): void;
}

export type MarketStore = StoreApi<MarketState>;

export function createMarketStore(api: GatewayApi): MarketStore {
  let seq = 0;
  const reset = () => ({ seq: ++seq, change: { kind: "reset" } as BarChange });
  const key = (state: { instrument: string | null; timeframe: string }) =>
    `${state.instrument}/${state.timeframe}`;

  const store = createStore<MarketState>()((set, get) => ({
    symbols: [],
    symbolsState: "idle",
    symbolsError: null,
    instrument: null,
    timeframe: "1m",
    bars: [],
    barsChange: { seq: 0, change: { kind: "reset" } },
    chartState: "idle",
    chartError: null,
    indicators: [],
    warnings: [],
    connection: "connecting",
    liveUpdates: 0,
    overlays: { ...DEFAULT_OVERLAYS },
    panes: { ...DEFAULT_PANES },
    quality: null,
    qualityState: "idle",
    features: null,
    featuresState: "idle",
    mode: "live",
    replay: defaultRange(),
    replayRun: 0,
    replayPaused: false,
    replayStatus: { phase: "idle", position: null },
    replayProblem: null,

    async loadSymbols() {
      set({ symbolsState: "loading", symbolsError: null });
      try {
        const symbols = (await api.symbols()).filter((symbol) => symbol.active);
        set({ symbols, symbolsState: symbols.length === 0 ? "empty" : "ready" });
        const current = get().instrument;
        const first = symbols[0];
        if (first !== undefined && (current === null || !symbols.some((s) => s.instrument === current))) {
          get().selectInstrument(first.instrument);
        }
      } catch (error) {
        set({ symbolsState: "error", symbolsError: errorText(error) });
      }
    },

    selectInstrument(instrument) {
      if (instrument === get().instrument) return;
      set({ instrument, ...emptyChart(), barsChange: reset() });
    },

    selectTimeframe(timeframe) {
      if (timeframe === get().timeframe) return;
      set({ timeframe, ...emptyChart(), barsChange: reset() });
    },

    async loadHistory() {
      const { instrument, timeframe } = get();
      if (instrument === null) return;
      const wanted = key(get());
      if (get().bars.length === 0) set({ chartState: "loading", chartError: null });
      try {
        const chart = await api.chart(instrument, { timeframe, limit: HISTORY_LIMIT });
        if (key(get()) !== wanted) return; // the user moved on meanwhile
        const bars = mergeHistory(get().bars, chart.bars);
        set({
          bars,
          barsChange: reset(),
          indicators: mergeIndicators([], chart.indicators ?? []),
          warnings: chart.warnings,
          chartState: bars.length === 0 ? "empty" : "ready",
          chartError: null,
        });
      } catch (error) {
        if (key(get()) !== wanted) return;
        set({ chartState: get().bars.length > 0 ? "ready" : "error", chartError: errorText(error) });
      }
    },

    applyLiveBars(instrument, timeframe, incoming) {
      let finals = 0;
      let gap = false;
      const state = get();
      if (instrument !== state.instrument || timeframe !== state.timeframe) return { finals, gap };
      const step = timeframeSeconds(state.timeframe);
      let bars = state.bars;
      for (const bar of [...incoming].sort((a, b) => a.time - b.time)) {
        const result = applyLiveBar(bars, bar, step);
        bars = result.bars;
        gap ||= result.gap;
        if (bar.final) finals += 1;
        if (result.change.kind !== "none") {
          // One store update per change, so the chart sees every step in order.
          set({
            bars,
            barsChange: { seq: ++seq, change: result.change },
            chartState: "ready",
          });
        }
      }
      set({ liveUpdates: get().liveUpdates + 1 });
      return { finals, gap };
    },

    async refreshIndicators() {
      const { instrument, timeframe } = get();
      if (instrument === null) return;
      const wanted = key(get());
      try {
        const chart = await api.chart(instrument, { timeframe, limit: 5 });
        if (key(get()) !== wanted) return;
        set({ indicators: mergeIndicators(get().indicators, chart.indicators ?? []) });
        // The same answer carries the final bars: fill in any the socket did not bring.
        get().applyLiveBars(instrument, timeframe, chart.bars);
      } catch {
        // Indicators catch up with the next final bar; the candles do not depend on them.
      }
    },

    async refreshQuality(asOf) {
      const { instrument, timeframe } = get();
      if (instrument === null) return;
      const wanted = key(get());
      if (get().quality === null) set({ qualityState: "loading" });
      try {
        const quality = await api.quality(instrument, timeframe, asOf);
        if (key(get()) === wanted) set({ quality, qualityState: "ready" });
      } catch (error) {
        if (key(get()) !== wanted) return;
        const none = error instanceof ApiError && error.status === 404;
        set({ quality: null, qualityState: none ? "empty" : "error" });
      }
    },

    async refreshFeatures(asOf) {
      const { instrument, timeframe } = get();
      if (instrument === null) return;
      const wanted = key(get());
      if (get().features === null) set({ featuresState: "loading" });
      try {
        const series = await api.features(instrument, timeframe, asOf);
        if (key(get()) !== wanted) return;
        const latest = series.rows[series.rows.length - 1] ?? null;
        set({ features: latest, featuresState: latest === null ? "empty" : "ready" });
      } catch (error) {
        if (key(get()) !== wanted) return;
        const none = error instanceof ApiError && error.status === 404;
        set({ features: null, featuresState: none ? "empty" : "error" });
      }
    },

    setConnection(connection) {
      set({ connection });
    },

    toggleOverlay(id) {
      set({ overlays: { ...get().overlays, [id]: !get().overlays[id] } });
    },

    togglePane(id) {
      set({ panes: { ...get().panes, [id]: !get().panes[id] } });
    },

    setReplayRange(range) {
      set({ replay: { ...get().replay, ...range } });
    },

    playReplay() {
      const problem = rangeProblem(get().replay);
      if (problem !== null) {
        set({ replayProblem: problem });
        return false;
      }
      set({
        mode: "replay",
        replayRun: get().replayRun + 1,
        replayPaused: false,
        replayProblem: null,
        replayStatus: { phase: "connecting", position: null },
        ...emptyChart(),
        barsChange: reset(),
      });
      return true;
    },

    setReplayPaused(replayPaused) {
      if (get().mode === "replay") set({ replayPaused });
    },

    leaveReplay() {
      if (get().mode === "live") return;
      set({
        mode: "live",
        replayPaused: false,
        replayProblem: null,
        replayStatus: { phase: "idle", position: null },
        ...emptyChart(),
        barsChange: reset(),
      });
    },

    setReplayStatus(replayStatus) {
      set({ replayStatus });
    },

    setReplayProblem(replayProblem) {
      set({ replayProblem });
    },

    async loadReplayHistory() {
      const { instrument, timeframe, replay } = get();
      if (instrument === null) return;
      const wanted = `${key(get())}/${get().replayRun}`;
      try {
        const chart = await api.chart(instrument, {
          timeframe,
          limit: HISTORY_LIMIT,
          end: replay.from,
          as_of: replay.from,
        });
        if (`${key(get())}/${get().replayRun}` !== wanted) return;
        const bars = mergeHistory(get().bars, chart.bars);
        set({
          bars,
          barsChange: reset(),
          indicators: mergeIndicators(chart.indicators ?? [], get().indicators),
          warnings: chart.warnings,
          chartState: bars.length === 0 ? "empty" : "ready",
          chartError: null,
        });
      } catch (error) {
        // The replayed bars still come; only what came before the range is missing.
        if (`${key(get())}/${get().replayRun}` === wanted) set({ warnings: [errorText(error)] });
      }
    },

    applyIndicatorRow(instrument, timeframe, row) {
      const state = get();
      if (instrument !== state.instrument || timeframe !== state.timeframe) return;
      set({ indicators: mergeIndicators(state.indicators, [row]) });
    },
  }));
  return store;
}

function emptyChart() {
  return {
    bars: [] as Bar[],
    indicators: [] as IndicatorRow[],
    warnings: [] as string[],
    chartState: "loading" as LoadState,
    chartError: null,
    liveUpdates: 0,
    quality: null,
    qualityState: "loading" as LoadState,
    features: null,
    featuresState: "loading" as LoadState,
  };
}
