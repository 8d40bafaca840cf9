import { useAppServices, useMarket } from "../appServices";
import { TIMEFRAMES } from "../market/timeframes";

export function TimeframeSwitch() {
  const { market } = useAppServices();
  const timeframe = useMarket((state) => state.timeframe);
  return (
    <div className="segmented" role="group" aria-label="Timeframe">
      {TIMEFRAMES.map(({ label }) => (
        <button
          key={label}
          type="button"
          aria-pressed={label === timeframe}
          onClick={() => market.getState().selectTimeframe(label)}
        >
          {label}
        </button>
      ))}
    </div>
  );
}
