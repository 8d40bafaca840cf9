import { type FormEvent, useId, useState } from "react";
import type { AlertCondition } from "../api/types";
import { useAlerts, useAppServices, useMarket } from "../appServices";
import { instrumentLabel } from "../market/venues";

export const CONDITIONS: { value: AlertCondition; label: string; unit: string }[] = [
  { value: "price_above", label: "Price above", unit: "price" },
  { value: "price_below", label: "Price below", unit: "price" },
  { value: "price_crossing", label: "Price crossing", unit: "price" },
  { value: "percent_change", label: "Change over", unit: "%" },
  { value: "rsi_above", label: "RSI above", unit: "RSI" },
  { value: "rsi_below", label: "RSI below", unit: "RSI" },
  { value: "macd_cross", label: "MACD cross", unit: "" },
  { value: "volume_spike", label: "Volume spike", unit: "× avg" },
];

/** A new WebSocket alert on the chosen instrument and timeframe. */
export function AlertForm() {
  const { alerts } = useAppServices();
  const instrument = useMarket((state) => state.instrument);
  const timeframe = useMarket((state) => state.timeframe);
  const lastClose = useMarket((state) => state.bars[state.bars.length - 1]?.close);
  const saving = useAlerts((state) => state.saving);
  const saveError = useAlerts((state) => state.saveError);
  const [condition, setCondition] = useState<AlertCondition>("price_above");
  const [threshold, setThreshold] = useState("");
  const [oneTime, setOneTime] = useState(false);
  const ids = { condition: useId(), threshold: useId(), once: useId() };
  const unit = CONDITIONS.find((entry) => entry.value === condition)?.unit ?? "";

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (instrument === null) return;
    const value = condition === "macd_cross" ? 0 : Number(threshold);
    const created = await alerts.getState().create({
      instrument,
      timeframe,
      condition,
      threshold: value,
      channel: "websocket",
      one_time: oneTime,
      cooldown: 60,
    });
    if (created) setThreshold("");
  }

  return (
    <form className="alert-form" onSubmit={(event) => void submit(event)} aria-label="New alert">
      <div className="row">
        <label htmlFor={ids.condition}>Condition</label>
        <select
          id={ids.condition}
          value={condition}
          onChange={(event) => setCondition(event.target.value as AlertCondition)}
        >
          {CONDITIONS.map((entry) => (
            <option key={entry.value} value={entry.value}>
              {entry.label}
            </option>
          ))}
        </select>
      </div>
      {condition !== "macd_cross" && (
        <div className="row">
          <label htmlFor={ids.threshold}>Threshold {unit && <span className="muted">({unit})</span>}</label>
          <input
            id={ids.threshold}
            type="number"
            step="any"
            required
            inputMode="decimal"
            placeholder={lastClose !== undefined && unit === "price" ? String(lastClose) : ""}
            value={threshold}
            onChange={(event) => setThreshold(event.target.value)}
          />
        </div>
      )}
      <div className="row inline">
        <input id={ids.once} type="checkbox" checked={oneTime} onChange={(event) => setOneTime(event.target.checked)} />
        <label htmlFor={ids.once}>Fire once</label>
      </div>
      {saveError !== null && (
        <p className="error" role="alert">
          {saveError}
        </p>
      )}
      <button type="submit" className="primary" disabled={saving || instrument === null}>
        {saving ? "Saving…" : `Add alert on ${instrument === null ? "…" : instrumentLabel(instrument)} ${timeframe}`}
      </button>
    </form>
  );
}
