import { useAppServices, useMarket } from "../appServices";
import { OVERLAYS, PANES } from "../market/overlays";

/** Toggles for price overlays and the oscillator panes under the price pane. */
export function ChartControls() {
  const { market } = useAppServices();
  const overlays = useMarket((state) => state.overlays);
  const panes = useMarket((state) => state.panes);
  const warnings = useMarket((state) => state.warnings);
  return (
    <div className="chart-controls">
      <fieldset className="chips">
        <legend>Overlays</legend>
        {OVERLAYS.map((overlay) => (
          <label key={overlay.id} className="chip" style={{ "--chip": overlay.color } as React.CSSProperties}>
            <input
              type="checkbox"
              checked={overlays[overlay.id]}
              onChange={() => market.getState().toggleOverlay(overlay.id)}
            />
            {overlay.label}
          </label>
        ))}
      </fieldset>
      <fieldset className="chips">
        <legend>Panes</legend>
        {PANES.map((pane) => (
          <label key={pane.id} className="chip">
            <input
              type="checkbox"
              checked={panes[pane.id]}
              onChange={() => market.getState().togglePane(pane.id)}
            />
            {pane.label}
          </label>
        ))}
      </fieldset>
      {warnings.length > 0 && (
        <p className="muted small" role="status">
          {warnings.join("; ")}
        </p>
      )}
    </div>
  );
}
