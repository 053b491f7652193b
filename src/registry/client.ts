/**
 * A client of one registry (OCI distribution spec): the `/v2/` ping that tells a
 * registry from anything else, and requests that carry the authorization their scopes
 * need, answering a 401 once, and retried on 5xx and dropped connections.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { Authorizer } from "./auth.ts";
import { parseChallenges } from "./challenge.ts";
import { type Credentials, dockerCredentials, parseCredentials } from "./credentials.ts";
import { errorDetails } from "./errors.ts";
import { type Body, discard, send, type SendContext } from "./http.ts";
import { endpointOf } from "./reference.ts";
import { DEFAULT_RETRY, type RetryPolicy } from "./retry.ts";

/** How to reach a registry. */
export interface ClientOptions {
  /** Talk plain HTTP instead of HTTPS (a registry on loopback, say). */
  plainHttp?: boolean;
  /** Credentials, `user:pass` or parsed; default those docker's config.json holds for the registry. */
  creds?: string | Credentials;
  /** Path of docker's config.json to read credentials from (default `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). */
  dockerConfig?: string;
  /** Retries on 5xx answers and dropped connections (default 5 retries, 200 ms doubling up to 5 s). */
  retry?: Partial<RetryPolicy>;
  /** A transfer that receives nothing for this long (ms) counts as dropped and resumes (default 30,000). */
  idleTimeoutMs?: number;
  /** Called when a request is tried again: for progress displays. */
  onRetry?: (what: string, attempt: number, why: string) => void;
}

/** What one request needs besides its method and path. */
export interface RequestOptions {
  /** Token scopes it needs, `repository:NAME:pull[,push]`. */
  scopes: string[];
  /** The operation and object, for errors: `pull`, `host/repo:tag`. */
  op: string;
  what: string;
  headers?: Record<string, string>;
  body?: Body | ReadableStream<Uint8Array>;
  /** Whether it may be sent again (GET, HEAD, PUT of bytes: yes; PATCH: no). Default: yes unless the body is a stream. */
  idempotent?: boolean;
  signal?: AbortSignal;
}

/** A client of one registry. */
export class RegistryClient {
  /** The registry as references name it: `127.0.0.1:5000`, `docker.io`. */
  readonly registry: string;
  /** The API's base URL: `https://registry-1.docker.io`. */
  readonly base: string;
  readonly plainHttp: boolean;
  readonly policy: RetryPolicy;
  readonly idleTimeoutMs: number;
  readonly #auth: Authorizer;
  readonly #onRetry?: ClientOptions["onRetry"];

  private constructor(registry: string, creds: Credentials | undefined, options: ClientOptions) {
    this.registry = registry;
    this.plainHttp = options.plainHttp ?? false;
    this.base = `${this.plainHttp ? "http" : "https"}://${endpointOf({ registry })}`;
    this.policy = { ...DEFAULT_RETRY, ...options.retry };
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#onRetry = options.onRetry;
    this.#auth = new Authorizer(registry, creds, this.#context("auth", registry));
  }

  /** A client for `registry`, with the credentials the options give or docker's config holds. */
  static async create(registry: string, options: ClientOptions = {}): Promise<RegistryClient> {
    const creds = typeof options.creds === "string"
      ? parseCredentials(options.creds)
      : options.creds ?? await dockerCredentials(registry, options.dockerConfig);
    return new RegistryClient(registry, creds, options);
  }

  #context(op: string, what: string): SendContext {
    return {
      op, host: this.registry, plainHttp: this.plainHttp, policy: this.policy,
      onRetry: this.#onRetry && ((attempt, why) => this.#onRetry!(what, attempt, why)),
    };
  }

  /** The URL of an API path (`/v2/...`), or a URL the registry gave (a `Location`), resolved against the base. */
  url(path: string | URL): URL {
    return new URL(path, this.base);
  }

  /**
   * Checks that an OCI registry answers at `/v2/` (200, or 401 with a challenge), and
   * learns how it wants to be authorized.
   */
  async ping(): Promise<void> {
    const url = this.url("/v2/");
    const res = await send(url, { method: "GET", idempotent: true }, this.#context("ping", this.registry));
    const api = res.headers.get("docker-distribution-api-version");
    if (res.status === 401) {
      this.#auth.learn(res);
      await discard(res);
      return;
    }
    const text = res.ok ? await res.text().catch(() => "") : await errorDetails(res);
    let json = false;
    try {
      JSON.parse(text || "{}");
      json = true;
    } catch { /* not JSON */ }
    if (res.ok && (api || json)) return;
    const plainToTls = this.plainHttp && res.status === 400 && /https/i.test(text) ? "; it wants HTTPS: drop --plain-http" : "";
    throw storeError("EPROTO", "ping", this.registry,
      `not an OCI registry: ${url.href} answered HTTP ${res.status}${res.ok ? " with no registry API" : ""}${text ? ` (${text.slice(0, 120)})` : ""}${plainToTls}`);
  }

  /**
   * Sends a request with the authorization `opts.scopes` need, answering one 401. A 401
   * after that fails with EACCES; other statuses are the caller's to judge.
   */
  async request(method: string, path: string | URL, opts: RequestOptions): Promise<Response> {
    const url = this.url(path);
    const ctx = this.#context(opts.op, opts.what);
    const idempotent = opts.idempotent ?? !(opts.body instanceof ReadableStream);
    const go = (authorization: string | undefined) => send(url, {
      method, body: opts.body, idempotent, signal: opts.signal,
      headers: { ...opts.headers, ...(authorization ? { authorization } : {}) },
    }, ctx);
    const first = await this.#auth.header(opts.scopes);
    const res = await go(first);
    if (res.status !== 401) return res;
    if (opts.body instanceof ReadableStream) {
      await discard(res);
      throw storeError("EACCES", opts.op, opts.what, "the registry asked for authorization in the middle of an upload; try again");
    }
    const next = await this.#auth.answer(res, opts.scopes, first);
    const again = await go(next);
    if (again.status !== 401) return again;
    const challenges = parseChallenges(again.headers.get("www-authenticate"));
    await discard(again);
    throw this.#auth.refused(challenges, opts.scopes);
  }
}
