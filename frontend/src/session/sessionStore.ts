/**
 * Who is signed in. Tokens live in this closure only (never in storage), the access token
 * is renewed before it expires, and a used-up refresh token signs the user out.
 */
import { createStore, type StoreApi } from "zustand/vanilla";
import type { GatewayApi } from "../api/gateway";
import { ApiError, errorText, type TokenSource } from "../api/http";
import type { TokenPair, User } from "../api/types";
import { refreshDelayMs } from "./refreshSchedule";

export type SessionStatus = "signed-out" | "signing-in" | "signed-in";

export interface SessionState {
  status: SessionStatus;
  user: User | null;
  error: string | null;
  login(username: string, password: string): Promise<void>;
  register(username: string, password: string): Promise<void>;
  logout(): Promise<void>;
}

export interface SessionStore extends TokenSource {
  store: StoreApi<SessionState>;
}

export function createSessionStore(api: GatewayApi): SessionStore {
  let access: string | null = null;
  let refresh: string | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let renewing: Promise<boolean> | null = null;

  const store = createStore<SessionState>()((set) => ({
    status: "signed-out",
    user: null,
    error: null,
    async login(username, password) {
      set({ status: "signing-in", error: null });
      try {
        adopt(await api.login(username, password));
        set({ status: "signed-in", user: await api.me(), error: null });
      } catch (error) {
        forget();
        set({ status: "signed-out", user: null, error: loginError(error) });
      }
    },
    async register(username, password) {
      set({ status: "signing-in", error: null });
      try {
        await api.register(username, password);
      } catch (error) {
        set({ status: "signed-out", error: errorText(error) });
        return;
      }
      await store.getState().login(username, password);
    },
    async logout() {
      const token = refresh;
      forget();
      set({ status: "signed-out", user: null, error: null });
      if (token !== null) {
        try {
          await api.logout(token);
        } catch {
          // The tokens are already gone from this page; the server forgets them on expiry.
        }
      }
    },
  }));

  function adopt(pair: TokenPair): void {
    access = pair.access_token;
    refresh = pair.refresh_token;
    if (timer !== null) clearTimeout(timer);
    timer = setTimeout(() => void renew(), refreshDelayMs(pair.expires_in));
  }

  function forget(): void {
    access = null;
    refresh = null;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  async function renewOnce(): Promise<boolean> {
    const token = refresh;
    if (token === null) return false;
    try {
      adopt(await api.refresh(token));
      return true;
    } catch (error) {
      if (refresh !== token) return access !== null; // signed out or renewed meanwhile
      forget();
      const expired = error instanceof ApiError && error.status === 401;
      store.setState({
        status: "signed-out",
        user: null,
        error: expired ? "Your session expired; sign in again." : errorText(error),
      });
      return false;
    }
  }

  /** Renew the access token; concurrent callers share one request. */
  function renew(): Promise<boolean> {
    renewing ??= renewOnce().finally(() => {
      renewing = null;
    });
    return renewing;
  }

  return { store, accessToken: () => access, renew };
}

function loginError(error: unknown): string {
  if (error instanceof ApiError && error.status === 401) return "Wrong username or password.";
  return errorText(error);
}
