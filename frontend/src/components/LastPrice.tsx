import { useMarket } from "../appServices";

export function formatPrice(value: number): string {
  const digits = value >= 1000 ? 2 : value >= 1 ? 4 : 6;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** The newest bar's close, exactly as the venue wrote it, and its move against the previous close. */
export function LastPrice() {
  const last = useMarket((state) => state.bars[state.bars.length - 1]);
  const previous = useMarket((state) => state.bars[state.bars.length - 2]);
  const updates = useMarket((state) => state.liveUpdates);
  if (last === undefined) return <span className="last-price muted">—</span>;
  // The move is a ratio (a float is fine); the price itself is shown as the exact string.
  const before = previous === undefined ? 0 : Number(previous.close);
  const raw = before === 0 ? 0 : (Number(last.close) - before) / before;
  const change = Math.abs(raw) < 0.00005 ? 0 : raw; // shown to 0.01%: no "-0.00%"
  const direction = change > 0 ? "up" : change < 0 ? "down" : "flat";
  return (
    <span
      className={`last-price ${direction}`}
      data-testid="last-price"
      data-bar-time={last.time}
      data-live-updates={updates}
      aria-label={`Last price ${last.close}`}
    >
      {last.close}
      <small>
        {change >= 0 ? "+" : ""}
        {(change * 100).toFixed(2)}%{last.final ? "" : " · forming"}
      </small>
    </span>
  );
}
