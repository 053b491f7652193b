/**
 * When and how long to wait before trying a request again: exponential backoff with
 * jitter for 5xx answers, 429 and dropped connections, honouring `Retry-After`.
 *
 * @module
 */

/** How a client retries. */
export interface RetryPolicy {
  /** Attempts after the first one. */
  retries: number;
  /** The first wait in ms; each further one doubles, up to `maxDelayMs`. */
  backoffMs: number;
  /** The longest wait in ms. */
  maxDelayMs: number;
}

/** Five more tries over about 6 seconds: enough for a registry restarting or a proxy hiccup. */
export const DEFAULT_RETRY: RetryPolicy = { retries: 5, backoffMs: 200, maxDelayMs: 5000 };

/** Whether a status is worth another try: the server's trouble, not the request's. */
export function retryableStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status !== 505);
}

/** The wait before attempt `attempt` (1 for the first retry), in ms. */
export function backoff(policy: RetryPolicy, attempt: number, retryAfter?: string | null): number {
  const asked = retryAfter ? Number(retryAfter) * 1000 : NaN;
  if (Number.isFinite(asked) && asked >= 0) return Math.min(asked, policy.maxDelayMs);
  const base = Math.min(policy.backoffMs * 2 ** (attempt - 1), policy.maxDelayMs);
  return base / 2 + Math.random() * (base / 2);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
