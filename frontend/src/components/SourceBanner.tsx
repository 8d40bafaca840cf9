import { useEffect, useState } from "react";
import type { SourceHealth } from "../api/types";
import { useAppServices } from "../appServices";
import { unreachableVenues, unreachableText } from "../market/sourceHealth";

/** How often the dashboard asks whether the venues can be reached. */
export const SOURCE_POLL_MS = 15_000;

/** One plain line per venue that cannot be reached, pointing to the offline simulator. */
export function SourceBannerView({ sources }: { sources: readonly SourceHealth[] }) {
  const venues = unreachableVenues(sources);
  if (venues.length === 0) return null;
  return (
    <div className="banner warning" role="alert" data-testid="source-banner">
      {venues.map((venue) => (
        <p key={venue}>{unreachableText(venue)}</p>
      ))}
    </div>
  );
}

/** The banner, fed by `GET /api/v1/health` every SOURCE_POLL_MS (a failed read changes nothing). */
export function SourceBanner() {
  const { api } = useAppServices();
  const [sources, setSources] = useState<SourceHealth[]>([]);
  useEffect(() => {
    let live = true;
    const read = () =>
      api.health().then(
        (health) => {
          if (live) setSources(health.sources ?? []);
        },
        () => undefined, // the gateway itself unreachable shows in the connection status
      );
    void read();
    const timer = window.setInterval(() => void read(), SOURCE_POLL_MS);
    return () => {
      live = false;
      window.clearInterval(timer);
    };
  }, [api]);
  return <SourceBannerView sources={sources} />;
}
