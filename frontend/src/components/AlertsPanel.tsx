import { useAlerts, useAppServices, useSession } from "../appServices";
import { AlertForm, CONDITIONS } from "./AlertForm";
import { formatPrice } from "./LastPrice";
import { instrumentLabel } from "../market/venues";

function describe(condition: string, threshold: number): string {
  const entry = CONDITIONS.find((candidate) => candidate.value === condition);
  if (condition === "macd_cross") return entry?.label ?? condition;
  const value = entry?.unit === "price" ? formatPrice(threshold) : String(threshold);
  return `${entry?.label ?? condition} ${value}${entry?.unit && entry.unit !== "price" ? ` ${entry.unit}` : ""}`;
}

function timeOf(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Create, list and delete alerts; their firings appear as they happen. */
export function AlertsPanel() {
  const { alerts: store } = useAppServices();
  const role = useSession((state) => state.user?.role);
  const alerts = useAlerts((state) => state.alerts);
  const listState = useAlerts((state) => state.listState);
  const listError = useAlerts((state) => state.listError);
  const recent = useAlerts((state) => state.recent);
  const canWrite = role === "trader" || role === "admin";

  return (
    <section className="panel alerts" aria-labelledby="alerts-title" data-testid="alerts">
      <header>
        <h2 id="alerts-title">Alerts</h2>
      </header>
      {!canWrite ? (
        <p className="muted">Alerts are for traders; your role is {role ?? "unknown"}. Ask an admin to upgrade it.</p>
      ) : (
        <>
          <AlertForm />
          <div aria-live="polite" className="firings" data-testid="alert-firings">
            {recent.length > 0 && <h3>Fired</h3>}
            <ul>
              {recent.slice(0, 5).map((event) => (
                <li key={event.id} className="firing">
                  <span className="badge">#{event.alert_id}</span> {event.message}{" "}
                  <time className="muted small" dateTime={event.fired_at}>
                    {timeOf(event.fired_at)}
                  </time>
                </li>
              ))}
            </ul>
          </div>
          {listState === "loading" && <p className="muted">Loading alerts…</p>}
          {listState === "error" && <p className="error">Alerts could not be loaded: {listError}</p>}
          {listState === "ready" && alerts.length === 0 && <p className="muted">No alerts yet.</p>}
          <ul className="alert-list">
            {alerts.map((alert) => (
              <li key={alert.id} data-alert-id={alert.id} data-fired={alert.last_triggered !== null}>
                <div>
                  <strong>{instrumentLabel(alert.instrument)}</strong> <span className="muted">{alert.timeframe}</span>{" "}
                  {describe(alert.condition, alert.threshold)}
                  <div className="muted small">
                    {alert.active ? "active" : "inactive"}
                    {alert.one_time ? " · once" : ""}
                    {alert.last_triggered !== null ? ` · fired ${timeOf(alert.last_triggered)}` : " · not fired yet"}
                  </div>
                </div>
                <button
                  type="button"
                  className="danger"
                  aria-label={`Delete alert ${alert.id} on ${alert.instrument}`}
                  onClick={() => void store.getState().remove(alert.id)}
                >
                  Delete
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
