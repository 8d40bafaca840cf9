/**
 * Instruments as the gateway writes them, "<venue>:<symbol>" (e.g. "binance_usdm:BTCUSDT"),
 * and the venue names people read ("Binance USD-M"). Pure, so tested without a browser.
 */

const VENUE_NAMES: Record<string, string> = {
  binance_spot: "Binance spot",
  binance_usdm: "Binance USD-M",
  yahoo: "Yahoo Finance",
  simulator: "Simulator",
};

const INSTRUMENT = /^([a-z0-9_]+):([A-Z0-9.\-^=]{1,20})$/;

export interface InstrumentParts {
  venue: string;
  symbol: string;
}

/** The venue and symbol of "<venue>:<symbol>", or null when the text is not of that form. */
export function parseInstrument(text: string): InstrumentParts | null {
  const match = INSTRUMENT.exec(text);
  return match === null ? null : { venue: match[1]!, symbol: match[2]! };
}

/** True for the label of a market venue (not the simulator, not a part of the collector). */
export function isMarketVenue(label: string): boolean {
  return label !== "simulator" && label in VENUE_NAMES;
}

/** A venue label as people say it ("binance_usdm" → "Binance USD-M"); unknown labels as they are. */
export function venueName(venue: string): string {
  return VENUE_NAMES[venue] ?? venue;
}

/** "BTCUSDT · Binance USD-M" for "binance_usdm:BTCUSDT"; other text as it is. */
export function instrumentLabel(instrument: string): string {
  const parts = parseInstrument(instrument);
  return parts === null ? instrument : `${parts.symbol} · ${venueName(parts.venue)}`;
}
