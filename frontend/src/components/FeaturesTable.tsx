import { useId, useMemo, useState } from "react";
import { useMarket } from "../appServices";

function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e6)) return value.toExponential(3);
  return value.toFixed(4);
}

/** The latest ML feature row of the instrument and timeframe, filterable by name. */
export function FeaturesTable() {
  const features = useMarket((state) => state.features);
  const state = useMarket((s) => s.featuresState);
  const [filter, setFilter] = useState("");
  const filterId = useId();
  const rows = useMemo(() => {
    if (features === null) return [];
    const needle = filter.trim().toLowerCase();
    return Object.entries(features.values)
      .filter(([name]) => needle === "" || name.toLowerCase().includes(needle))
      .sort(([a], [b]) => a.localeCompare(b));
  }, [features, filter]);

  return (
    <section className="panel features" aria-labelledby={`${filterId}-title`} data-testid="features">
      <header>
        <h2 id={`${filterId}-title`}>Latest features</h2>
        {features !== null && (
          <span className="muted small">
            {new Date(features.time * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC · v
            {features.feature_version}
          </span>
        )}
      </header>
      {state === "loading" && <p className="muted">Loading features…</p>}
      {state === "empty" && <p className="muted">No features yet: they follow the first final bars.</p>}
      {state === "error" && <p className="error">Features are unavailable right now.</p>}
      {features !== null && (
        <>
          <label className="sr-only" htmlFor={filterId}>
            Filter features
          </label>
          <input
            id={filterId}
            type="search"
            placeholder={`Filter ${Object.keys(features.values).length} features`}
            value={filter}
            onChange={(event) => setFilter(event.target.value)}
          />
          <div className="table-scroll" tabIndex={0} aria-label="Feature values">
            <table>
              <thead>
                <tr>
                  <th scope="col">Feature</th>
                  <th scope="col" className="number">
                    Value
                  </th>
                </tr>
              </thead>
              <tbody>
                {rows.map(([name, value]) => (
                  <tr key={name}>
                    <td>{name}</td>
                    <td className="number">{formatValue(value)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
