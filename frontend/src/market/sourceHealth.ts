/** Which venues the collector cannot reach, and what the dashboard says about it (pure). */
import type { SourceHealth } from "../api/types";
import { isMarketVenue, venueName } from "./venues";

/**
 * The venues in state "unreachable", by name, each once. Other collector parts (its link to
 * the bar service) are not venues: `make demo` would not help them, so they are left out.
 */
export function unreachableVenues(sources: readonly SourceHealth[]): string[] {
  const names = sources
    .filter((source) => source.state === "unreachable" && isMarketVenue(source.source))
    .map((source) => source.source);
  return [...new Set(names)].sort();
}

/** The banner's sentence for one unreachable venue. */
export function unreachableText(venue: string): string {
  return `${venueName(venue)} cannot be reached from this machine. Run \`make demo\` to use the offline simulator.`;
}
