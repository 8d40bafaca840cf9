/**
 * Keeps the market store fed: one LiveFeed per chosen instrument, history re-read on every
 * (re)subscription, indicators/quality/features refreshed after final bars. Idle in replay
 * mode (replay/replaySync.ts feeds the chart then).
 */
import type { LiveFeedHandlers, SocketLike } from "./liveFeed";
import { LiveFeed } from "./liveFeed";
import type { MarketStore } from "./marketStore";

export interface MarketSyncOptions {
  market: MarketStore;
  accessToken(): string | null;
  renewToken(): Promise<boolean>;
  /** ws(s)://host/ws/ + instrument ("binance_usdm:BTCUSDT") */
  socketUrl(instrument: string): string;
  openSocket?: (url: string) => SocketLike;
  onAlert?: LiveFeedHandlers["alert"];
  /** After a final bar, wait this long for analytics to store its rows (ms). */
  analyticsDelayMs?: number;
  /** Quality and features are re-read at most this often (ms). */
  analyticsIntervalMs?: number;
}

export function startMarketSync(options: MarketSyncOptions): () => void {
  const { market } = options;
  const analyticsDelay = options.analyticsDelayMs ?? 1500;
  const analyticsInterval = options.analyticsIntervalMs ?? 10_000;
  let feed: LiveFeed | null = null;
  let feedInstrument: string | null = null;
  let analyticsTimer: ReturnType<typeof setTimeout> | null = null;
  let lastAnalytics = 0;

  function refreshSide(): void {
    lastAnalytics = Date.now();
    void market.getState().refreshQuality();
    void market.getState().refreshFeatures();
  }

  function afterFinalBar(): void {
    if (analyticsTimer !== null) return;
    analyticsTimer = setTimeout(() => {
      analyticsTimer = null;
      void market.getState().refreshIndicators();
      if (Date.now() - lastAnalytics >= analyticsInterval) refreshSide();
    }, analyticsDelay);
  }

  const handlers: LiveFeedHandlers = {
    status: (status) => market.getState().setConnection(status),
    subscribed: () => void market.getState().loadHistory(),
    bars: (timeframe, bars) => {
      const instrument = feedInstrument;
      if (instrument === null) return;
      const { finals, gap } = market.getState().applyLiveBars(instrument, timeframe, bars);
      if (gap) void market.getState().loadHistory();
      if (finals > 0) afterFinalBar();
    },
    ...(options.onAlert ? { alert: options.onAlert } : {}),
  };

  function follow(instrument: string | null, timeframe: string): void {
    if (market.getState().mode === "replay") {
      // The replay sync feeds the chart; the live socket would mix the present into the past.
      feed?.stop();
      feed = null;
      feedInstrument = null;
      return;
    }
    if (instrument !== feedInstrument) {
      feed?.stop();
      feed = null;
      feedInstrument = instrument;
      if (instrument !== null) {
        feed = new LiveFeed({
          url: options.socketUrl(instrument),
          timeframe,
          accessToken: options.accessToken,
          renewToken: options.renewToken,
          handlers,
          ...(options.openSocket ? { openSocket: options.openSocket } : {}),
        });
        feed.start();
      }
    } else {
      feed?.setTimeframe(timeframe);
    }
    // History now, without waiting for the socket: the chart does not depend on it.
    void market.getState().loadHistory();
    refreshSide();
  }

  const initial = market.getState();
  if (initial.instrument !== null) follow(initial.instrument, initial.timeframe);
  const unsubscribe = market.subscribe((state, previous) => {
    if (
      state.instrument !== previous.instrument ||
      state.timeframe !== previous.timeframe ||
      state.mode !== previous.mode
    ) {
      follow(state.instrument, state.timeframe);
    }
  });

  const online = () => feed?.retryNow();
  const offline = () => feed?.goOffline();
  const hasWindow = typeof window !== "undefined";
  if (hasWindow) {
    window.addEventListener("online", online);
    window.addEventListener("offline", offline);
  }

  return () => {
    unsubscribe();
    feed?.stop();
    feed = null;
    feedInstrument = null;
    if (analyticsTimer !== null) clearTimeout(analyticsTimer);
    if (hasWindow) {
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
    }
  };
}
