/**
 * Plays the store's replay: one ReplayFeed while the mode is replay, restarted by every Play
 * and by a change of instrument or timeframe; pause and speed go to the running feed. The
 * chart is first filled as it was known at the range's start, then the replayed stream
 * goes through the same bar merge as live pushes.
 */
import type { SocketLike } from "../market/liveFeed";
import type { MarketState, MarketStore } from "../market/marketStore";
import { ReplayFeed } from "./replayFeed";

export interface ReplaySyncOptions {
  market: MarketStore;
  accessToken(): string | null;
  /** ws(s)://host/ws/replay/ + instrument */
  socketUrl(instrument: string): string;
  openSocket?: (url: string) => SocketLike;
}

export function startReplaySync(options: ReplaySyncOptions): () => void {
  const { market } = options;
  let feed: ReplayFeed | null = null;
  let playing = "";

  function begin(state: MarketState): void {
    const instrument = state.instrument;
    if (instrument === null) return;
    const { timeframe } = state;
    feed = new ReplayFeed({
      url: options.socketUrl(instrument),
      timeframe,
      range: state.replay,
      accessToken: options.accessToken,
      handlers: {
        status: (status) => market.getState().setReplayStatus(status),
        bars: (frame, bars) => void market.getState().applyLiveBars(instrument, frame, bars),
        indicators: (frame, row) => market.getState().applyIndicatorRow(instrument, frame, row),
        problem: (detail) => market.getState().setReplayProblem(detail),
      },
      ...(options.openSocket ? { openSocket: options.openSocket } : {}),
    });
    void market.getState().loadReplayHistory();
    feed.start();
  }

  function sync(state: MarketState, previous: MarketState | null): void {
    const wanted =
      state.mode === "replay" && state.instrument !== null && state.replayRun > 0
        ? `${state.replayRun}/${state.instrument}/${state.timeframe}`
        : "";
    if (wanted !== playing) {
      feed?.stop();
      feed = null;
      playing = wanted;
      if (wanted !== "") begin(state);
      return;
    }
    if (feed === null || previous === null) return;
    if (state.replayPaused !== previous.replayPaused) {
      if (state.replayPaused) feed.pause();
      else feed.resume();
    }
    if (state.replay.speed !== previous.replay.speed) feed.setSpeed(state.replay.speed);
  }

  sync(market.getState(), null);
  const unsubscribe = market.subscribe((state, previous) => sync(state, previous));
  return () => {
    unsubscribe();
    feed?.stop();
    feed = null;
  };
}
