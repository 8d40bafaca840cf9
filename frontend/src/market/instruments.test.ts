import { describe, expect, it } from "vitest";
import { instrumentPath } from "../api/gateway";
import type { SourceHealth, SymbolInfo } from "../api/types";
import { matchesQuery } from "../components/SymbolPicker";
import { unreachableText, unreachableVenues } from "./sourceHealth";
import { fakeApi } from "../testing/fakes";
import { createMarketStore } from "./marketStore";
import { readAddress, startUrlSync, writeAddress } from "./urlState";
import { instrumentLabel, parseInstrument, venueName } from "./venues";

function entry(venue: string, symbol: string): SymbolInfo {
  return { instrument: `${venue}:${symbol}`, exchange: venue, symbol, asset_type: "crypto", active: true, created_at: "" };
}

describe("instruments", () => {
  it("reads the one text form and names the venue", () => {
    expect(parseInstrument("binance_usdm:BTCUSDT")).toEqual({ venue: "binance_usdm", symbol: "BTCUSDT" });
    expect(parseInstrument("yahoo:^GSPC")).toEqual({ venue: "yahoo", symbol: "^GSPC" });
    expect(parseInstrument("BTCUSDT")).toBeNull();
    expect(parseInstrument("binance_spot:btc")).toBeNull();
    expect(instrumentLabel("binance_usdm:BTCUSDT")).toBe("BTCUSDT · Binance USD-M");
    expect(instrumentLabel("binance_spot:BTCUSDT")).toBe("BTCUSDT · Binance spot");
    expect(venueName("kraken")).toBe("kraken");
  });

  it("keeps the ':' of an instrument readable in a path", () => {
    expect(instrumentPath("binance_usdm:BTCUSDT")).toBe("binance_usdm:BTCUSDT");
    expect(instrumentPath("yahoo:^GSPC")).toBe("yahoo:%5EGSPC");
  });

  it("finds an instrument by symbol, venue label or venue name", () => {
    const spot = entry("binance_spot", "BTCUSDT");
    const usdm = entry("binance_usdm", "BTCUSDT");
    expect([spot, usdm].filter((e) => matchesQuery(e, "btc")).length).toBe(2);
    expect([spot, usdm].filter((e) => matchesQuery(e, "usd-m"))).toEqual([usdm]);
    expect([spot, usdm].filter((e) => matchesQuery(e, "binance_spot"))).toEqual([spot]);
    expect(matchesQuery(spot, "  ")).toBe(true);
  });
});

describe("the address names the chart", () => {
  it("reads the instrument and timeframe, ignoring malformed ones", () => {
    expect(readAddress("?instrument=binance_usdm:BTCUSDT&timeframe=5m")).toEqual({
      instrument: "binance_usdm:BTCUSDT",
      timeframe: "5m",
    });
    expect(readAddress("?instrument=binance_usdm%3ABTCUSDT")).toEqual({
      instrument: "binance_usdm:BTCUSDT",
      timeframe: null,
    });
    expect(readAddress("?instrument=BTCUSDT&timeframe=7m")).toEqual({ instrument: null, timeframe: null });
    expect(readAddress("")).toEqual({ instrument: null, timeframe: null });
  });

  it("writes them readably, keeping other parameters", () => {
    expect(writeAddress("", { instrument: "binance_spot:BTCUSDT", timeframe: "1m" })).toBe(
      "?instrument=binance_spot:BTCUSDT&timeframe=1m",
    );
    expect(writeAddress("?debug=1&instrument=x", { instrument: "yahoo:AAPL", timeframe: "1h" })).toBe(
      "?debug=1&instrument=yahoo:AAPL&timeframe=1h",
    );
    expect(writeAddress("?instrument=yahoo:AAPL", { instrument: null, timeframe: null })).toBe("");
  });
});

describe("the address and the store", () => {
  it("opens the chart a link names and follows every later choice", () => {
    const market = createMarketStore(fakeApi({}));
    let search = "?instrument=binance_usdm:BTCUSDT&timeframe=5m";
    const written: string[] = [];
    const stop = startUrlSync(market, {
      search: () => search,
      replace: (next) => {
        search = next;
        written.push(next);
      },
    });
    expect(market.getState().instrument).toBe("binance_usdm:BTCUSDT");
    expect(market.getState().timeframe).toBe("5m");
    expect(written).toEqual([]); // the address already says it
    market.getState().selectInstrument("binance_spot:BTCUSDT");
    expect(search).toBe("?instrument=binance_spot:BTCUSDT&timeframe=5m");
    market.getState().selectTimeframe("1h");
    expect(search).toBe("?instrument=binance_spot:BTCUSDT&timeframe=1h");
    stop();
    market.getState().selectTimeframe("1m");
    expect(search).toBe("?instrument=binance_spot:BTCUSDT&timeframe=1h");
  });
});

describe("source health", () => {
  it("lists each unreachable venue once and says what to do", () => {
    const sources: SourceHealth[] = [
      { source: "binance_usdm", state: "unreachable", error: "ConnectError" },
      { source: "binance_spot", state: "up" },
      { source: "yahoo", state: "unreachable" },
      { source: "yahoo", state: "unreachable" },
      { source: "ingest", state: "unreachable" }, // not a venue
    ];
    expect(unreachableVenues(sources)).toEqual(["binance_usdm", "yahoo"]);
    expect(unreachableText("binance_usdm")).toBe(
      "Binance USD-M cannot be reached from this machine. Run `make demo` to use the offline simulator.",
    );
  });
});
