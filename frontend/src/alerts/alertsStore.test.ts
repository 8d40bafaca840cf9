import { describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/http";
import type { Alert, AlertEvent } from "../api/types";
import { fakeApi } from "../testing/fakes";
import { createAlertsStore, mergeEvents } from "./alertsStore";

function alert(id: number, lastTriggered: string | null = null): Alert {
  return {
    id,
    user_id: 1,
    instrument: "binance_usdm:BTCUSDT",
    timeframe: "1m",
    condition: "price_above",
    threshold: 1,
    direction: "any",
    lookback_bars: 1,
    channel: "websocket",
    target: null,
    cooldown: 60,
    one_time: false,
    active: true,
    last_triggered: lastTriggered,
    created_at: "2026-01-01T00:00:00Z",
  };
}

function event(id: number, alertId: number, second: number): AlertEvent {
  const at = `2026-01-01T00:00:${String(second).padStart(2, "0")}Z`;
  return { id, alert_id: alertId, bar_time: at, fired_at: at, value: 2, message: `price above 1 (#${id})` };
}

describe("alerts store", () => {
  it("creates, lists and deletes", async () => {
    const deleteAlert = vi.fn(() => Promise.resolve());
    const store = createAlertsStore(
      fakeApi({
        alerts: () => Promise.resolve([alert(1)]),
        createAlert: () => Promise.resolve(alert(2)),
        deleteAlert,
      }),
    );
    await store.getState().load();
    expect(await store.getState().create({ instrument: "binance_usdm:BTCUSDT", timeframe: "1m", condition: "price_above", threshold: 1 })).toBe(true);
    expect(store.getState().alerts.map((a) => a.id)).toEqual([2, 1]);
    await store.getState().remove(1);
    expect(deleteAlert).toHaveBeenCalledWith(1);
    expect(store.getState().alerts.map((a) => a.id)).toEqual([2]);
  });

  it("shows why a new alert was refused", async () => {
    const store = createAlertsStore(
      fakeApi({ createAlert: () => Promise.reject(new ApiError(422, { detail: "threshold: an RSI level is between 0 and 100" })) }),
    );
    expect(await store.getState().create({ instrument: "binance_spot:X", timeframe: "1m", condition: "rsi_above", threshold: 300 })).toBe(false);
    expect(store.getState().saveError).toBe("threshold: an RSI level is between 0 and 100");
  });

  it("restores an alert whose delete failed", async () => {
    const store = createAlertsStore(
      fakeApi({ alerts: () => Promise.resolve([alert(1)]), deleteAlert: () => Promise.reject(new ApiError(503, { detail: "down" })) }),
    );
    await store.getState().load();
    await store.getState().remove(1);
    expect(store.getState().alerts).toHaveLength(1);
  });

  it("marks viewers as forbidden and stops polling them", async () => {
    const alerts = vi.fn(() => Promise.reject(new ApiError(403, { detail: "traders only" })));
    const store = createAlertsStore(fakeApi({ alerts }));
    await store.getState().poll();
    await store.getState().poll();
    expect(store.getState().listState).toBe("forbidden");
    expect(alerts).toHaveBeenCalledOnce();
  });

  it("finds firings by polling: events of alerts whose last_triggered moved", async () => {
    let listed = [alert(1), alert(2)];
    const alertEvents = vi.fn((id: number) => Promise.resolve(id === 1 ? [event(10, 1, 5)] : []));
    const store = createAlertsStore(fakeApi({ alerts: () => Promise.resolve(listed), alertEvents }));
    await store.getState().poll();
    expect(alertEvents).not.toHaveBeenCalled();
    listed = [alert(1, "2026-01-01T00:00:05Z"), alert(2)];
    await store.getState().poll();
    expect(alertEvents).toHaveBeenCalledWith(1);
    expect(store.getState().recent.map((e) => e.id)).toEqual([10]);
    await store.getState().poll();
    expect(alertEvents).toHaveBeenCalledOnce();
  });

  it("takes firings pushed over the WebSocket, once each", async () => {
    const store = createAlertsStore(fakeApi({ alerts: () => Promise.resolve([alert(1)]) }));
    await store.getState().load();
    store.getState().receive({ type: "alert", event: event(7, 1, 1), alert: alert(1, "2026-01-01T00:00:01Z") });
    store.getState().receive({ type: "alert", event: event(7, 1, 1) });
    store.getState().receive({ type: "alert", ...event(8, 1, 2) });
    store.getState().receive({ type: "alert", nonsense: true });
    expect(store.getState().recent.map((e) => e.id)).toEqual([8, 7]);
    expect(store.getState().alerts[0]!.last_triggered).toBe("2026-01-01T00:00:02Z");
  });

  it("orders events newest first without duplicates", () => {
    expect(mergeEvents([event(1, 1, 1), event(2, 1, 2)], [event(2, 1, 2), event(3, 1, 3)]).map((e) => e.id)).toEqual([3, 2, 1]);
  });
});
