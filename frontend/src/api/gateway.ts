/** Every gateway route the dashboard uses, typed. */
import type { HttpClient } from "./http";
import type {
  Alert,
  AlertEvent,
  AlertInput,
  Chart,
  FeatureSeries,
  Health,
  Quality,
  SymbolInfo,
  TokenPair,
  User,
} from "./types";

export interface ChartQuery {
  timeframe: string;
  limit?: number;
  start?: string;
  end?: string;
  indicators?: boolean;
  /** Answer as known at this instant (ISO 8601): a point-in-time read. */
  as_of?: string;
}

/** An instrument ("binance_usdm:BTCUSDT") as a path segment; the ':' needs no escaping. */
export function instrumentPath(instrument: string): string {
  return encodeURIComponent(instrument).replace(/%3A/gi, ":");
}

export class GatewayApi {
  constructor(private readonly http: HttpClient) {}

  register(username: string, password: string): Promise<User> {
    return this.http.request("POST", "/api/v1/auth/register", {
      body: { username, password },
      auth: false,
    });
  }

  login(username: string, password: string): Promise<TokenPair> {
    return this.http.request("POST", "/api/v1/auth/login", {
      body: { username, password },
      auth: false,
    });
  }

  refresh(refreshToken: string): Promise<TokenPair> {
    return this.http.request("POST", "/api/v1/auth/refresh", {
      body: { refresh_token: refreshToken },
      auth: false,
    });
  }

  logout(refreshToken: string): Promise<void> {
    return this.http.request("POST", "/api/v1/auth/logout", {
      body: { refresh_token: refreshToken },
      auth: false,
    });
  }

  me(): Promise<User> {
    return this.http.request("GET", "/api/v1/auth/me");
  }

  symbols(): Promise<SymbolInfo[]> {
    return this.http.request("GET", "/api/v1/symbols");
  }

  chart(instrument: string, query: ChartQuery, signal?: AbortSignal): Promise<Chart> {
    const options = { query: { ...query }, ...(signal ? { signal } : {}) };
    return this.http.request("GET", `/api/v1/charts/${instrumentPath(instrument)}`, options);
  }

  /** The latest feature row; with `asOf`, the latest known at that instant. */
  features(instrument: string, timeframe: string, asOf?: string): Promise<FeatureSeries> {
    return this.http.request("GET", `/api/v1/features/${instrumentPath(instrument)}`, {
      query: { timeframe, limit: 1, ...(asOf !== undefined ? { as_of: asOf } : {}) },
    });
  }

  /** The latest quality assessment; with `asOf`, the latest known at that instant. */
  quality(instrument: string, timeframe: string, asOf?: string): Promise<Quality> {
    return this.http.request("GET", `/api/v1/quality/${instrumentPath(instrument)}`, {
      query: { timeframe, ...(asOf !== undefined ? { as_of: asOf } : {}) },
    });
  }

  /** The mesh's health and each market-data source's state (no sign-in needed). */
  health(): Promise<Health> {
    return this.http.request("GET", "/api/v1/health", { auth: false });
  }

  alerts(): Promise<Alert[]> {
    return this.http.request("GET", "/api/v1/alerts");
  }

  createAlert(alert: AlertInput): Promise<Alert> {
    return this.http.request("POST", "/api/v1/alerts", { body: alert });
  }

  deleteAlert(id: number): Promise<void> {
    return this.http.request("DELETE", `/api/v1/alerts/${id}`);
  }

  alertEvents(id: number, limit = 20): Promise<AlertEvent[]> {
    return this.http.request("GET", `/api/v1/alerts/${id}/events`, { query: { limit } });
  }
}
