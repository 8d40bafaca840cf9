/**
 * The WebSocket `/ws/{instrument}` ("binance_usdm:BTCUSDT"): authenticate, subscribe to one timeframe, deliver bars,
 * and reconnect with backoff. Every (re)subscription is reported so the caller re-reads
 * history over REST: bars pushed while the socket was down are never replayed by the
 * gateway.
 */
import type { Bar } from "../api/types";

export type ConnectionStatus = "connecting" | "live" | "reconnecting" | "offline";

/** What the feed needs of a WebSocket (the browser's, or a fake in tests). */
export interface SocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface LiveFeedHandlers {
  status(status: ConnectionStatus): void;
  bars(timeframe: string, bars: Bar[]): void;
  /** Subscribed (first time or after a reconnect): re-read history now. */
  subscribed(timeframe: string): void;
  alert?(message: Record<string, unknown>): void;
}

export interface LiveFeedOptions {
  url: string;
  timeframe: string;
  accessToken(): string | null;
  renewToken(): Promise<boolean>;
  handlers: LiveFeedHandlers;
  openSocket?: (url: string) => SocketLike;
  /** Silence after which the socket is presumed dead (the gateway beats every 15 s). */
  silenceMs?: number;
  random?: () => number;
}

const OPEN = 1;
const POLICY_VIOLATION = 1008;
/** Failed attempts in a row after which the status says offline (retries go on). */
export const OFFLINE_AFTER_FAILURES = 4;

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s doubling to 10 s, ±20%. */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(10_000, 500 * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random()));
}

export class LiveFeed {
  private socket: SocketLike | null = null;
  private timeframe: string;
  private failures = 0;
  private everLive = false;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private silenceTimer: ReturnType<typeof setTimeout> | null = null;
  private lastStatus: ConnectionStatus | null = null;

  constructor(private readonly options: LiveFeedOptions) {
    this.timeframe = options.timeframe;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.close(1000, "leaving");
    }
  }

  /** Switch the subscription to another timeframe (history is re-read via `subscribed`). */
  setTimeframe(timeframe: string): void {
    const previous = this.timeframe;
    this.timeframe = timeframe;
    if (this.socket?.readyState !== OPEN) return;
    this.send({ type: "unsubscribe", timeframes: [previous] });
    this.send({ type: "subscribe", timeframes: [timeframe] });
  }

  /** The browser lost its network: drop the socket and say offline until live again. */
  goOffline(): void {
    if (this.stopped) return;
    this.failures = Math.max(this.failures, OFFLINE_AFTER_FAILURES - 1);
    this.report("offline");
    const socket = this.socket;
    if (socket === null) return;
    // Closing from this side may not call onclose at once (or at all while offline).
    socket.onclose = null;
    socket.onmessage = null;
    socket.close(4001, "browser offline");
    this.socket = null;
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.scheduleRetry();
  }

  /** Reconnect at once (e.g. the browser came back online). */
  retryNow(): void {
    if (this.stopped || this.socket !== null) return;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.connect();
  }

  private connect(): void {
    this.report(this.everLive ? "reconnecting" : "connecting");
    const token = this.options.accessToken();
    const open = this.options.openSocket ?? ((url: string) => new WebSocket(url) as SocketLike);
    let socket: SocketLike;
    try {
      socket = open(this.options.url);
    } catch {
      this.scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.send({ type: "auth", token: token ?? "" });
      this.send({ type: "subscribe", timeframes: [this.timeframe] });
      this.armSilenceTimer();
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onerror = () => {
      // onclose follows and schedules the retry
    };
    socket.onclose = (event) => {
      this.socket = null;
      if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
      if (this.stopped) return;
      if (event.code === POLICY_VIOLATION && /token/i.test(event.reason)) {
        void this.options.renewToken().then((renewed) => {
          if (renewed) this.scheduleRetry();
          else this.report("offline");
        });
        return;
      }
      this.scheduleRetry();
    };
  }

  private receive(data: unknown): void {
    this.armSilenceTimer();
    if (typeof data !== "string") return;
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null) return;
    const body = message as Record<string, unknown>;
    switch (body.type) {
      case "subscribed": {
        const timeframes = Array.isArray(body.timeframes) ? body.timeframes : [];
        if (!timeframes.includes(this.timeframe)) return; // the unsubscribe's echo
        this.failures = 0;
        this.everLive = true;
        this.report("live");
        this.options.handlers.subscribed(this.timeframe);
        return;
      }
      case "bars":
        if (body.timeframe === this.timeframe && Array.isArray(body.bars)) {
          this.options.handlers.bars(this.timeframe, body.bars as Bar[]);
        }
        return;
      case "alert":
        this.options.handlers.alert?.(body);
        return;
      default:
        return; // welcome, heartbeat, pong, error
    }
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.failures += 1;
    this.report(
      this.failures >= OFFLINE_AFTER_FAILURES
        ? "offline"
        : this.everLive
          ? "reconnecting"
          : "connecting",
    );
    const delay = reconnectDelayMs(this.failures - 1, this.options.random);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  private armSilenceTimer(): void {
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => {
      this.socket?.close(4000, "silent too long");
    }, this.options.silenceMs ?? 45_000);
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(message));
  }

  private report(status: ConnectionStatus): void {
    if (status === this.lastStatus) return;
    if (status !== "offline" && this.lastStatus === "offline" && this.failures > 0) {
      // keep saying offline while attempts keep failing
      if (status !== "live") return;
    }
    this.lastStatus = status;
    this.options.handlers.status(status);
  }

  private clearTimers(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.silenceTimer !== null) clearTimeout(this.silenceTimer);
    this.retryTimer = null;
    this.silenceTimer = null;
  }
}
