import { describe, expect, it, vi } from "vitest";
import { ApiError, errorText, HttpClient } from "./http";

function json(status: number, body: unknown, type = "application/json"): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": type },
  });
}

describe("HttpClient", () => {
  it("sends the bearer token and the query, and parses JSON", async () => {
    const fetchImpl = vi.fn((_url: string, _init?: RequestInit) => Promise.resolve(json(200, { ok: 1 })));
    const client = new HttpClient(fetchImpl);
    client.useTokens({ accessToken: () => "abc", renew: () => Promise.resolve(false) });
    const body = await client.request("GET", "/api/v1/charts/BTCUSDT", { query: { timeframe: "1m", start: undefined } });
    expect(body).toEqual({ ok: 1 });
    const [url, init] = fetchImpl.mock.calls[0]!;
    expect(url).toBe("/api/v1/charts/BTCUSDT?timeframe=1m");
    expect((init?.headers as Record<string, string>).Authorization).toBe("Bearer abc");
  });

  it("turns a problem+json answer into an ApiError with its detail", async () => {
    const client = new HttpClient(() =>
      Promise.resolve(json(422, { title: "Unprocessable Entity", status: 422, detail: "invalid request: threshold" }, "application/problem+json")),
    );
    const error = await client.request("POST", "/x", { body: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(422);
    expect(errorText(error)).toBe("invalid request: threshold");
  });

  it("renews the token once after a 401 and retries", async () => {
    let token = "old";
    const fetchImpl = vi.fn((_url: string, init?: RequestInit) => {
      const auth = (init?.headers as Record<string, string>).Authorization;
      return Promise.resolve(auth === "Bearer new" ? json(200, [1]) : json(401, { detail: "expired" }));
    });
    const client = new HttpClient(fetchImpl);
    client.useTokens({
      accessToken: () => token,
      renew: () => {
        token = "new";
        return Promise.resolve(true);
      },
    });
    expect(await client.request("GET", "/api/v1/symbols")).toEqual([1]);
    expect(fetchImpl).toHaveBeenCalledTimes(2);
  });

  it("returns nothing for 204 and survives a non-JSON error page", async () => {
    const client = new HttpClient(vi.fn().mockResolvedValueOnce(new Response(null, { status: 204 })).mockResolvedValueOnce(new Response("<html>bad gateway</html>", { status: 502, statusText: "Bad Gateway" })));
    expect(await client.request("DELETE", "/api/v1/alerts/1")).toBeUndefined();
    const error = await client.request("GET", "/x").catch((e: unknown) => e);
    expect(errorText(error)).toBe("The server could not answer: Bad Gateway");
  });

  it("words network failures and rate limits for people", () => {
    expect(errorText(new TypeError("Failed to fetch"))).toBe("The server cannot be reached.");
    expect(errorText(new ApiError(429, { detail: "slow down" }))).toMatch(/Too many requests/);
  });
});
