/**
 * The WebSocket `/ws/replay/{instrument}`: authenticate, send `start`, then deliver the
 * replayed `bars` and `indicators` messages (the live socket's shapes) and the gateway's
 * `replay` status; pause, resume, speed and seek steer it. A replay is not resumed after the
 * socket drops: the caller is told and the user plays again.
 */
import type { Bar, IndicatorRow } from "../api/types";
import type { SocketLike } from "../market/liveFeed";
import { type ReplayRange, type ReplaySpeed, speedMessageValue } from "./replayRange";

export type ReplayPhase = "idle" | "connecting" | "playing" | "paused" | "ended" | "failed";

export interface ReplayStatus {
  phase: ReplayPhase;
  /** The replay's clock: the commit time it has reached (ISO), when known. */
  position: string | null;
}

export interface ReplayFeedHandlers {
  status(status: ReplayStatus): void;
  bars(timeframe: string, bars: Bar[]): void;
  indicators(timeframe: string, row: IndicatorRow): void;
  /** A message the gateway sent about a bad request or a failed upstream. */
  problem(detail: string): void;
}

export interface ReplayFeedOptions {
  url: string;
  timeframe: string;
  range: ReplayRange;
  accessToken(): string | null;
  handlers: ReplayFeedHandlers;
  openSocket?: (url: string) => SocketLike;
}

const OPEN = 1;
const PHASES: Record<string, ReplayPhase> = {
  playing: "playing",
  paused: "paused",
  ended: "ended",
  failed: "failed",
};

export class ReplayFeed {
  private socket: SocketLike | null = null;
  private stopped = false;
  private finished = false;

  constructor(private readonly options: ReplayFeedOptions) {}

  start(): void {
    const { options } = this;
    options.handlers.status({ phase: "connecting", position: null });
    const open = options.openSocket ?? ((url: string) => new WebSocket(url) as SocketLike);
    let socket: SocketLike;
    try {
      socket = open(options.url);
    } catch {
      this.fail("The replay could not connect.");
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.send({ type: "auth", token: options.accessToken() ?? "" });
      this.send({
        type: "start",
        timeframe: options.timeframe,
        from: options.range.from,
        to: options.range.to,
        speed: speedMessageValue(options.range.speed),
      });
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onerror = () => {
      // onclose follows
    };
    socket.onclose = (event) => {
      this.socket = null;
      if (this.stopped || this.finished) return;
      this.fail(event.reason !== "" ? `Replay closed: ${event.reason}` : "The replay connection was lost.");
    };
  }

  stop(): void {
    this.stopped = true;
    const socket = this.socket;
    this.socket = null;
    if (socket !== null) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.close(1000, "leaving");
    }
  }

  pause(): void {
    this.send({ type: "pause" });
  }

  resume(): void {
    this.send({ type: "resume" });
  }

  setSpeed(speed: ReplaySpeed): void {
    this.send({ type: "speed", speed: speedMessageValue(speed) });
  }

  seek(time: string): void {
    this.send({ type: "seek", time });
  }

  private receive(data: unknown): void {
    if (typeof data !== "string") return;
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message !== "object" || message === null) return;
    const body = message as Record<string, unknown>;
    const { handlers, timeframe } = this.options;
    switch (body.type) {
      case "replay": {
        const phase = PHASES[String(body.state)];
        if (phase === undefined) return;
        if (phase === "ended" || phase === "failed") this.finished = true;
        handlers.status({ phase, position: typeof body.position === "string" ? body.position : null });
        return;
      }
      case "bars":
        if (body.timeframe === timeframe && Array.isArray(body.bars)) handlers.bars(timeframe, body.bars as Bar[]);
        return;
      case "indicators":
        if (body.timeframe === timeframe && typeof body.indicators === "object" && body.indicators !== null) {
          handlers.indicators(timeframe, body.indicators as IndicatorRow);
        }
        return;
      case "error":
      case "warning":
        if (typeof body.detail === "string") handlers.problem(body.detail);
        return;
      default:
        return; // welcome, pong
    }
  }

  private fail(detail: string): void {
    this.options.handlers.problem(detail);
    this.options.handlers.status({ phase: "failed", position: null });
  }

  private send(message: Record<string, unknown>): void {
    if (this.socket?.readyState === OPEN) this.socket.send(JSON.stringify(message));
  }
}
