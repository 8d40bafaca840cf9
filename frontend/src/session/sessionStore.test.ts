import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../api/http";
import type { TokenPair } from "../api/types";
import { fakeApi } from "../testing/fakes";
import { refreshDelayMs } from "./refreshSchedule";
import { createSessionStore } from "./sessionStore";

const user = { id: 1, username: "alice", role: "trader" as const, disabled: false, created_at: "" };

function pair(n: number, expiresIn = 3600): TokenPair {
  return {
    access_token: `access-${n}`,
    token_type: "bearer",
    expires_in: expiresIn,
    refresh_token: `refresh-${n}-xxxxxxxxxxxxxxxx`,
    refresh_expires_at: "",
  };
}

describe("refreshDelayMs", () => {
  it("renews at 80% of the lifetime, at least a minute early, never in under 5 s", () => {
    expect(refreshDelayMs(3600)).toBe(2_880_000);
    expect(refreshDelayMs(120)).toBe(60_000);
    expect(refreshDelayMs(30)).toBe(5_000);
    expect(refreshDelayMs(-5)).toBe(5_000);
  });
});

describe("session store", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("signs in, keeps tokens in memory, renews before expiry, and signs out", async () => {
    let issued = 0;
    const refresh = vi.fn(() => Promise.resolve(pair(++issued)));
    const logout = vi.fn(() => Promise.resolve());
    const session = createSessionStore(
      fakeApi({ login: () => Promise.resolve(pair(++issued)), me: () => Promise.resolve(user), refresh, logout }),
    );
    await session.store.getState().login("alice", "password1");
    expect(session.store.getState().status).toBe("signed-in");
    expect(session.store.getState().user).toEqual(user);
    expect(session.accessToken()).toBe("access-1");
    expect(JSON.stringify(session.store.getState())).not.toContain("access-1");
    await vi.advanceTimersByTimeAsync(refreshDelayMs(3600));
    expect(refresh).toHaveBeenCalledWith("refresh-1-xxxxxxxxxxxxxxxx");
    expect(session.accessToken()).toBe("access-2");
    await session.store.getState().logout();
    expect(logout).toHaveBeenCalledWith("refresh-2-xxxxxxxxxxxxxxxx");
    expect(session.accessToken()).toBeNull();
    expect(session.store.getState().status).toBe("signed-out");
  });

  it("shares one refresh among concurrent renewals", async () => {
    const refresh = vi.fn(() => Promise.resolve(pair(2)));
    const session = createSessionStore(
      fakeApi({ login: () => Promise.resolve(pair(1)), me: () => Promise.resolve(user), refresh }),
    );
    await session.store.getState().login("alice", "password1");
    const results = await Promise.all([session.renew(), session.renew(), session.renew()]);
    expect(results).toEqual([true, true, true]);
    expect(refresh).toHaveBeenCalledOnce();
  });

  it("signs out with a message when the refresh token is refused", async () => {
    const session = createSessionStore(
      fakeApi({
        login: () => Promise.resolve(pair(1)),
        me: () => Promise.resolve(user),
        refresh: () => Promise.reject(new ApiError(401, { detail: "refresh token reused" })),
      }),
    );
    await session.store.getState().login("alice", "password1");
    expect(await session.renew()).toBe(false);
    expect(session.store.getState().status).toBe("signed-out");
    expect(session.store.getState().error).toBe("Your session expired; sign in again.");
  });

  it("says so when the password is wrong", async () => {
    const session = createSessionStore(
      fakeApi({ login: () => Promise.reject(new ApiError(401, { detail: "invalid credentials" })) }),
    );
    await session.store.getState().login("alice", "nope-nope");
    expect(session.store.getState()).toMatchObject({ status: "signed-out", error: "Wrong username or password." });
  });

  it("registers then signs in; a taken name is reported", async () => {
    const login = vi.fn(() => Promise.resolve(pair(1)));
    const session = createSessionStore(
      fakeApi({ register: () => Promise.resolve(user), login, me: () => Promise.resolve(user) }),
    );
    await session.store.getState().register("alice", "password1");
    expect(login).toHaveBeenCalledWith("alice", "password1");
    expect(session.store.getState().status).toBe("signed-in");

    const taken = createSessionStore(
      fakeApi({ register: () => Promise.reject(new ApiError(409, { detail: "username alice is taken" })) }),
    );
    await taken.store.getState().register("alice", "password1");
    expect(taken.store.getState()).toMatchObject({ status: "signed-out", error: "username alice is taken" });
  });
});
