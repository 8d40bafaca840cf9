/**
 * Keeps the market store fed: one LiveFeed per chosen symbol, history re-read on every
 * (re)subscription, indicators/quality/features refreshed after final bars.
 */
import type { LiveFeedHandlers, SocketLike } from "./liveFeed";
import { LiveFeed } from "./liveFeed";
import type { MarketStore } from "./marketStore";

export interface MarketSyncOptions {
  market: MarketStore;
  accessToken(): string | null;
  renewToken(): Promise<boolean>;
  /** ws(s)://host/ws/ + symbol */
  socketUrl(symbol: string): string;
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
  let feedSymbol: string | null = null;
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
      const symbol = feedSymbol;
      if (symbol === null) return;
      const { finals, gap } = market.getState().applyLiveBars(symbol, timeframe, bars);
      if (gap) void market.getState().loadHistory();
      if (finals > 0) afterFinalBar();
    },
    ...(options.onAlert ? { alert: options.onAlert } : {}),
  };

  function follow(symbol: string | null, timeframe: string): void {
    if (symbol !== feedSymbol) {
      feed?.stop();
      feed = null;
      feedSymbol = symbol;
      if (symbol !== null) {
        feed = new LiveFeed({
          url: options.socketUrl(symbol),
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
  if (initial.symbol !== null) follow(initial.symbol, initial.timeframe);
  const unsubscribe = market.subscribe((state, previous) => {
    if (state.symbol !== previous.symbol || state.timeframe !== previous.timeframe) {
      follow(state.symbol, state.timeframe);
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
    feedSymbol = null;
    if (analyticsTimer !== null) clearTimeout(analyticsTimer);
    if (hasWindow) {
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offline);
    }
  };
}
