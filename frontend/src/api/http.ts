/** JSON over HTTP with the gateway's conventions: Bearer tokens, problem+json errors. */
import type { Problem } from "./types";

/** A failed request, carrying the gateway's problem document when there was one. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(status: number, problem: Problem) {
    super(problem.detail ?? problem.title ?? `request failed (${status})`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

/** Where the client gets the access token, and how it renews it once after a 401. */
export interface TokenSource {
  accessToken(): string | null;
  renew(): Promise<boolean>;
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface RequestOptions {
  body?: unknown;
  query?: Query;
  /** Send the access token (default true). */
  auth?: boolean;
  signal?: AbortSignal;
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

function withQuery(path: string, query: Query | undefined): string {
  if (query === undefined) return path;
  const parameters = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) parameters.set(name, String(value));
  }
  const text = parameters.toString();
  return text === "" ? path : `${path}?${text}`;
}

async function problemOf(response: Response): Promise<Problem> {
  try {
    const body: unknown = await response.json();
    if (typeof body === "object" && body !== null) return body as Problem;
  } catch {
    // not JSON (a proxy's error page): fall through to the status line
  }
  return { status: response.status, title: response.statusText, detail: response.statusText };
}

export class HttpClient {
  private tokens: TokenSource | null = null;

  constructor(
    private readonly fetchImpl: FetchLike,
    private readonly baseUrl = "",
  ) {}

  useTokens(tokens: TokenSource): void {
    this.tokens = tokens;
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const auth = options.auth ?? true;
    let response = await this.send(method, path, options, auth);
    if (response.status === 401 && auth && this.tokens !== null && (await this.tokens.renew())) {
      response = await this.send(method, path, options, auth);
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  private send(
    method: string,
    path: string,
    options: RequestOptions,
    auth: boolean,
  ): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const token = auth ? this.tokens?.accessToken() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) init.body = JSON.stringify(options.body);
    if (options.signal !== undefined) init.signal = options.signal;
    return this.fetchImpl(this.baseUrl + withQuery(path, options.query), init);
  }
}

/** A sentence to show for any error. */
export function errorText(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 429) return "Too many requests; try again in a moment.";
    if (error.status >= 500) return `The server could not answer: ${error.message}`;
    return error.message;
  }
  if (error instanceof TypeError) return "The server cannot be reached.";
  return error instanceof Error ? error.message : String(error);
}
