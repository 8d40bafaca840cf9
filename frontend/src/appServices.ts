/** The dashboard's wiring: one place builds the API client and the stores. */
import { createContext, useContext } from "react";
import { useStore } from "zustand";
import { createAlertsStore, type AlertsState, type AlertsStore } from "./alerts/alertsStore";
import { GatewayApi } from "./api/gateway";
import { type FetchLike, HttpClient } from "./api/http";
import { createMarketStore, type MarketState, type MarketStore } from "./market/marketStore";
import { createSessionStore, type SessionState, type SessionStore } from "./session/sessionStore";

export interface AppServices {
  api: GatewayApi;
  session: SessionStore;
  market: MarketStore;
  alerts: AlertsStore;
}

export function createAppServices(fetchImpl: FetchLike, baseUrl = ""): AppServices {
  const http = new HttpClient(fetchImpl, baseUrl);
  const api = new GatewayApi(http);
  const session = createSessionStore(api);
  http.useTokens(session);
  return { api, session, market: createMarketStore(api), alerts: createAlertsStore(api) };
}

export const AppServicesContext = createContext<AppServices | null>(null);

export function useAppServices(): AppServices {
  const services = useContext(AppServicesContext);
  if (services === null) throw new Error("AppServicesContext is not provided");
  return services;
}

export function useSession<T>(selector: (state: SessionState) => T): T {
  return useStore(useAppServices().session.store, selector);
}

export function useMarket<T>(selector: (state: MarketState) => T): T {
  return useStore(useAppServices().market, selector);
}

export function useAlerts<T>(selector: (state: AlertsState) => T): T {
  return useStore(useAppServices().alerts, selector);
}
