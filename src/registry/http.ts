/**
 * One HTTP exchange with retries: `fetch` (Node's undici or Deno's own, no native parts)
 * tried again with backoff when the answer is a 5xx or 429 or the connection drops,
 * as long as the request can be sent again.
 *
 * @module
 */
import { isNetworkError, networkError } from "./errors.ts";
import { backoff, type RetryPolicy, retryableStatus, sleep } from "./retry.ts";

/** A request body that can be sent again: bytes, or nothing. */
export type Body = Uint8Array | undefined;

/** What {@linkcode send} is given besides the URL. */
export interface SendInit {
  method: string;
  headers?: Record<string, string>;
  /** Bytes (sent again on a retry), or a stream (then the request is tried once). */
  body?: Body | ReadableStream<Uint8Array>;
  /** Whether the request may be sent again on a 5xx or a dropped connection. */
  idempotent: boolean;
  signal?: AbortSignal;
}

/** How errors name things: the operation, and the host for network failures. */
export interface SendContext {
  op: string;
  host: string;
  plainHttp: boolean;
  policy: RetryPolicy;
  /** Called before each retry: the attempt number and why. */
  onRetry?(attempt: number, why: string): void;
}

/** Waits for a response to `url`, retrying as the policy says; network failures become one-line errors. */
export async function send(url: string | URL, init: SendInit, ctx: SendContext): Promise<Response> {
  const again = init.idempotent && !(init.body instanceof ReadableStream);
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(url, {
        method: init.method,
        headers: init.headers,
        body: init.body as RequestInit["body"],
        signal: init.signal,
        redirect: "follow",
        // Node's fetch wants this for a stream body; Deno ignores it.
        ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit);
    } catch (e) {
      if (init.signal?.aborted) throw init.signal.reason ?? e;
      if (!isNetworkError(e)) throw e;
      if (!again || attempt >= ctx.policy.retries) throw networkError(e, ctx.op, ctx.host, ctx.plainHttp);
      ctx.onRetry?.(attempt + 1, "connection failed");
      await sleep(backoff(ctx.policy, attempt + 1), init.signal);
      continue;
    }
    if (again && retryableStatus(res.status) && attempt < ctx.policy.retries) {
      await res.body?.cancel().catch(() => {});
      ctx.onRetry?.(attempt + 1, `HTTP ${res.status}`);
      await sleep(backoff(ctx.policy, attempt + 1, res.headers.get("retry-after")), init.signal);
      continue;
    }
    return res;
  }
}

/** Drops a response's body so its connection can be reused. */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}
