/**
 * Plays the store's replay: one ReplayFeed while the mode is replay, restarted by every Play
 * and by a change of instrument or timeframe; pause and speed go to the running feed. The
 * chart is first filled as it was known at the range's start, then the replayed stream
 * goes through the same bar merge as live pushes. Quality and features follow the replay's
 * position (read as of it, every few seconds), so the side panels show the past too.
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
  /** Quality and features are re-read as of the position at most this often (ms). */
  sideIntervalMs?: number;
}

export function startReplaySync(options: ReplaySyncOptions): () => void {
  const { market } = options;
  let feed: ReplayFeed | null = null;
  let playing = "";
  let sideReadAt = 0;
  const sideInterval = options.sideIntervalMs ?? 3000;

  function readSide(asOf: string, force = false): void {
    if (!force && Date.now() - sideReadAt < sideInterval) return;
    sideReadAt = Date.now();
    void market.getState().refreshQuality(asOf);
    void market.getState().refreshFeatures(asOf);
  }

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
        status: (status) => {
          market.getState().setReplayStatus(status);
          if (status.position !== null) readSide(status.position, status.phase === "ended");
        },
        bars: (frame, bars) => void market.getState().applyLiveBars(instrument, frame, bars),
        indicators: (frame, row) => market.getState().applyIndicatorRow(instrument, frame, row),
        problem: (detail) => market.getState().setReplayProblem(detail),
      },
      ...(options.openSocket ? { openSocket: options.openSocket } : {}),
    });
    void market.getState().loadReplayHistory();
    readSide(state.replay.from, true);
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
