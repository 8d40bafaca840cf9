/**
 * The address names what the dashboard shows: `/?instrument=binance_usdm:BTCUSDT&timeframe=1m`,
 * plus `&mode=replay&from=…&to=…&speed=60` for a replay (replay/replayRange.ts).
 * Read once at start (a reload or a shared link opens the same chart) and rewritten on
 * every change of instrument or timeframe (replaceState: no history entry per click).
 */
import { readReplayAddress, writeReplayAddress } from "../replay/replayRange";
import type { MarketStore } from "./marketStore";
import { isTimeframe } from "./timeframes";
import { parseInstrument } from "./venues";

export interface ChartAddress {
  instrument: string | null;
  timeframe: string | null;
}

/** The instrument and timeframe a query string names; malformed values are ignored. */
export function readAddress(search: string): ChartAddress {
  const params = new URLSearchParams(search);
  const instrument = params.get("instrument");
  const timeframe = params.get("timeframe");
  return {
    instrument: instrument !== null && parseInstrument(instrument) !== null ? instrument : null,
    timeframe: timeframe !== null && isTimeframe(timeframe) ? timeframe : null,
  };
}

/** The query string of a chart, keeping other parameters of `search`. */
export function writeAddress(search: string, address: ChartAddress): string {
  const params = new URLSearchParams(search);
  for (const name of ["instrument", "timeframe"] as const) {
    const value = address[name];
    if (value === null) params.delete(name);
    else params.set(name, value);
  }
  // ':' is legal in a query; keep the instrument readable in the address bar.
  const text = params.toString().replace(/%3A/gi, ":");
  return text === "" ? "" : `?${text}`;
}

export interface AddressBar {
  search(): string;
  replace(search: string): void;
}

const browserAddress: AddressBar = {
  search: () => window.location.search,
  replace: (search) => {
    const url = `${window.location.pathname}${search}${window.location.hash}`;
    window.history.replaceState(window.history.state, "", url);
  },
};

/** Apply the address to the store, then keep the address in step with it; returns a stop. */
export function startUrlSync(market: MarketStore, bar: AddressBar = browserAddress): () => void {
  const wanted = readAddress(bar.search());
  if (wanted.timeframe !== null && isTimeframe(wanted.timeframe)) {
    market.getState().selectTimeframe(wanted.timeframe);
  }
  if (wanted.instrument !== null) market.getState().selectInstrument(wanted.instrument);
  // A link naming a replay plays it (once an instrument is chosen, the replay sync starts).
  const replay = readReplayAddress(bar.search());
  if (replay !== null) {
    market.getState().setReplayRange(replay);
    market.getState().playReplay();
  }
  const write = () => {
    const { instrument, timeframe, mode, replay: range } = market.getState();
    const chart = writeAddress(bar.search(), { instrument, timeframe });
    const next = writeReplayAddress(chart, mode === "replay" ? range : null);
    if (next !== bar.search()) bar.replace(next);
  };
  write();
  return market.subscribe((state, previous) => {
    if (
      state.instrument !== previous.instrument ||
      state.timeframe !== previous.timeframe ||
      state.mode !== previous.mode ||
      state.replay !== previous.replay
    ) {
      write();
    }
  });
}
