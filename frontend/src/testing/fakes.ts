/** Test doubles: a scripted gateway and a WebSocket the test drives by hand. */
import type { GatewayApi } from "../api/gateway";
import type { Bar, Chart } from "../api/types";
import type { SocketLike } from "../market/liveFeed";

export const STEP = 60;
export const T0 = 1_700_000_040;

type Value = "open" | "high" | "low" | "close" | "volume";
/** Bar fields a test may give as numbers: the bar carries them as the API does, as strings. */
export type BarOverrides = Partial<Omit<Bar, Value>> & Partial<Record<Value, string | number>>;

export function bar(minute: number, overrides: BarOverrides = {}): Bar {
  const close = 100 + minute;
  const values: Record<Value, string | number> = {
    open: close - 0.5,
    high: close + 1,
    low: close - 1,
    close,
    volume: 10,
  };
  const given: Partial<Bar> = {};
  for (const [name, value] of Object.entries(overrides)) {
    if (name in values) values[name as Value] = value as string | number;
    else Object.assign(given, { [name]: value });
  }
  return {
    time: T0 + minute * STEP,
    open: String(values.open),
    high: String(values.high),
    low: String(values.low),
    close: String(values.close),
    volume: String(values.volume),
    final: true,
    revision: 0,
    ...given,
  };
}

export function finals(from: number, to: number): Bar[] {
  return Array.from({ length: to - from }, (_, index) => bar(from + index));
}

export function chartOf(bars: Bar[], instrument = "binance_usdm:BTCUSDT", timeframe = "1m"): Chart {
  return {
    instrument,
    timeframe,
    bars,
    indicators: bars.map((b) => ({ time: b.time, rsi: 50, sma_20: Number(b.close) })),
    warnings: [],
  };
}

/** A GatewayApi whose methods are whatever the test gives (others throw). */
export function fakeApi(methods: Partial<Record<keyof GatewayApi, unknown>>): GatewayApi {
  return new Proxy(methods, {
    get(target, name: string) {
      if (name in target) return target[name as keyof GatewayApi];
      return () => Promise.reject(new Error(`fakeApi: ${name} not scripted`));
    },
  }) as unknown as GatewayApi;
}

export class FakeSocket implements SocketLike {
  static opened: FakeSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  closedWith: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {
    FakeSocket.opened.push(this);
  }

  static last(): FakeSocket {
    const socket = FakeSocket.opened[FakeSocket.opened.length - 1];
    if (socket === undefined) throw new Error("no socket opened");
    return socket;
  }

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }

  // what the server side does
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  push(message: Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  drop(code = 1006, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

export function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
