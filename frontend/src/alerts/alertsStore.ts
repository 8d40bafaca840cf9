/**
 * The user's alerts and their firings. Firings arrive as WebSocket "alert" messages when
 * the gateway pushes them, and are also found by re-reading the list: an alert whose
 * `last_triggered` moved has new events, which are then fetched.
 */
import { createStore, type StoreApi } from "zustand/vanilla";
import type { GatewayApi } from "../api/gateway";
import { ApiError, errorText } from "../api/http";
import type { Alert, AlertEvent, AlertInput } from "../api/types";

export interface AlertsState {
  alerts: Alert[];
  listState: "idle" | "loading" | "ready" | "error" | "forbidden";
  listError: string | null;
  /** Firings per alert id, newest first. */
  events: Record<number, AlertEvent[]>;
  /** The latest firings of all alerts, newest first (what the panel highlights). */
  recent: AlertEvent[];
  saving: boolean;
  saveError: string | null;

  load(): Promise<void>;
  create(alert: AlertInput): Promise<boolean>;
  remove(id: number): Promise<void>;
  loadEvents(id: number): Promise<void>;
  /** Re-read the list and fetch events of alerts that fired since the last look. */
  poll(): Promise<void>;
  /** A firing pushed over the WebSocket. */
  receive(message: Record<string, unknown>): void;
}

export type AlertsStore = StoreApi<AlertsState>;

const RECENT_LIMIT = 20;

export function mergeEvents(current: readonly AlertEvent[], incoming: readonly AlertEvent[]) {
  const byId = new Map<number, AlertEvent>();
  for (const event of [...current, ...incoming]) byId.set(event.id, event);
  return [...byId.values()].sort(
    (a, b) => Date.parse(b.fired_at) - Date.parse(a.fired_at) || b.id - a.id,
  );
}

function isAlertEvent(value: unknown): value is AlertEvent {
  if (typeof value !== "object" || value === null) return false;
  const event = value as Record<string, unknown>;
  return (
    typeof event.id === "number" &&
    typeof event.alert_id === "number" &&
    typeof event.fired_at === "string" &&
    typeof event.message === "string"
  );
}

export function createAlertsStore(api: GatewayApi): AlertsStore {
  const store = createStore<AlertsState>()((set, get) => {
    function addEvents(id: number, incoming: AlertEvent[]): void {
      if (incoming.length === 0) return;
      const events = mergeEvents(get().events[id] ?? [], incoming);
      const recent = mergeEvents(get().recent, incoming).slice(0, RECENT_LIMIT);
      set({ events: { ...get().events, [id]: events }, recent });
    }

    return {
      alerts: [],
      listState: "idle",
      listError: null,
      events: {},
      recent: [],
      saving: false,
      saveError: null,

      async load() {
        if (get().alerts.length === 0) set({ listState: "loading" });
        try {
          const alerts = await api.alerts();
          set({ alerts, listState: "ready", listError: null });
        } catch (error) {
          const forbidden = error instanceof ApiError && error.status === 403;
          set({ listState: forbidden ? "forbidden" : "error", listError: errorText(error) });
        }
      },

      async create(alert) {
        set({ saving: true, saveError: null });
        try {
          const created = await api.createAlert(alert);
          set({ alerts: [created, ...get().alerts], saving: false, listState: "ready" });
          return true;
        } catch (error) {
          set({ saving: false, saveError: errorText(error) });
          return false;
        }
      },

      async remove(id) {
        const before = get().alerts;
        set({ alerts: before.filter((alert) => alert.id !== id) });
        try {
          await api.deleteAlert(id);
          const { [id]: _gone, ...events } = get().events;
          set({ events, recent: get().recent.filter((event) => event.alert_id !== id) });
        } catch (error) {
          if (error instanceof ApiError && error.status === 404) return; // already gone
          set({ alerts: before, listError: errorText(error) });
        }
      },

      async loadEvents(id) {
        try {
          addEvents(id, await api.alertEvents(id));
        } catch {
          // shown again on the next poll
        }
      },

      async poll() {
        if (get().listState === "forbidden") return;
        const before = new Map(get().alerts.map((alert) => [alert.id, alert.last_triggered]));
        await get().load();
        const fired = get().alerts.filter(
          (alert) =>
            alert.last_triggered !== null &&
            (alert.last_triggered !== before.get(alert.id) || get().events[alert.id] === undefined),
        );
        await Promise.all(fired.map((alert) => get().loadEvents(alert.id)));
      },

      receive(message) {
        const event = isAlertEvent(message.event) ? message.event : isAlertEvent(message) ? message : null;
        if (event === null) return;
        addEvents(event.alert_id, [event]);
        const alert = message.alert as Partial<Alert> | undefined;
        set({
          alerts: get().alerts.map((known) =>
            known.id === event.alert_id
              ? { ...known, ...(alert ?? {}), last_triggered: event.bar_time }
              : known,
          ),
        });
      },
    };
  });
  return store;
}
