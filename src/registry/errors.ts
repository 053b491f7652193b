/**
 * Registry failures as one clear line each: an HTTP status with the registry's own error
 * codes (distribution spec's `{"errors":[{"code","message"}]}`), or a network failure
 * (refused, reset, TLS spoken to a plain-HTTP server) in Node's or Deno's words.
 *
 * @module
 */
import { type ErrorCode, storeError, type StoreError } from "../common/errors.ts";

/** The distribution spec's error body. */
interface ErrorBody {
  errors?: { code?: string; message?: string; detail?: unknown }[];
}

/** The registry's error codes and messages in a response body, or "". */
export async function errorDetails(res: Response): Promise<string> {
  let text = "";
  try {
    text = await res.text();
  } catch {
    return "";
  }
  try {
    const body = JSON.parse(text) as ErrorBody;
    const errs = body.errors ?? [];
    if (errs.length) return errs.map((e) => `${e.code ?? "UNKNOWN"}${e.message ? `: ${e.message}` : ""}`).join("; ");
  } catch {
    // Not JSON: a proxy's or web server's page; its first line says enough.
  }
  return text.trim().split("\n")[0].slice(0, 200);
}

/** The code a status maps to. */
function codeOf(status: number): ErrorCode {
  if (status === 401 || status === 403) return "EACCES";
  if (status === 404) return "ENOENT";
  if (status === 400 || status === 405 || status === 409 || status === 411 || status === 413 || status === 416) return "EINVAL";
  return "EIO";
}

/**
 * An error for an unexpected response to `op` on `what` (a repository, blob or
 * manifest), naming the status and the registry's own words; `hint` says what to do.
 */
export async function responseError(res: Response, op: string, what: string, hint?: string): Promise<StoreError> {
  const details = await errorDetails(res);
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`;
  return storeError(codeOf(res.status), op, what, `the registry answered ${status}${details ? ` (${details})` : ""}${hint ? `; ${hint}` : ""}`);
}

/** The lowest-level cause of a fetch failure: Node wraps it as `cause`, Deno in the message. */
function rootCause(e: unknown): { code?: string; message: string } {
  let cur = e as { code?: string; message?: string; cause?: unknown } | undefined;
  let code: string | undefined;
  let message = String(cur?.message ?? e);
  for (let depth = 0; cur && depth < 5; depth++) {
    if (typeof cur.code === "string") code = cur.code;
    if (cur.message) message = cur.message;
    cur = cur.cause as typeof cur;
  }
  // OpenSSL's lines name a routine and a source file: the reason alone says it.
  message = message.split("\n")[0].trim();
  const ssl = /SSL routines:[^:]*:([^:]+)/.exec(message);
  return { code, message: ssl ? `${ssl[1]} (SSL)` : message };
}

const NET_CODES = /^(ECONNRESET|ECONNREFUSED|ECONNABORTED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|UND_ERR_\w+)$/;
const NET_WORDS = /connection (reset|closed|refused|aborted)|error sending request|broken pipe|unexpected eof|other side closed|terminated|socket hang up/i;

/**
 * Whether `e` is a failure of the connection (refused, reset, cut short), as fetch
 * reports it or as {@linkcode networkError} made it: worth trying again.
 */
export function isNetworkError(e: unknown): boolean {
  if ((e as { network?: boolean })?.network === true) return true;
  if (e instanceof TypeError) return true; // fetch's way of saying the request never got an answer
  const { code, message } = rootCause(e);
  return NET_CODES.test(code ?? "") || NET_WORDS.test(message);
}

/** A network failure talking to `host` during `op`, as one line saying what to try. */
export function networkError(e: unknown, op: string, host: string, plainHttp: boolean): StoreError {
  const { code, message } = rootCause(e);
  const text = `${code ?? ""} ${message}`;
  let err: StoreError;
  if (/ECONNREFUSED|refused/i.test(text)) {
    err = storeError("ECONNREFUSED", op, host, "nothing answers there; is the registry running, and is the host and port right?");
  } else if (/ENOTFOUND|EAI_AGAIN|lookup|resolve|dns/i.test(text)) {
    err = storeError("EIO", op, host, `the host name does not resolve (${message})`);
  } else if (!plainHttp && /SSL|TLS|wrong version|handshake|corrupt message|InvalidContentType|certificate/i.test(text) && !/certificate/i.test(text)) {
    err = storeError("EPROTO", op, host, `the TLS handshake failed (${message}); if the registry serves plain HTTP, pass --plain-http`);
  } else if (/certificate|self.signed|CERT_/i.test(text)) {
    err = storeError("EPROTO", op, host, `the registry's certificate is not trusted (${message}); add its CA (NODE_EXTRA_CA_CERTS, DENO_CERT)`);
  } else if (/ETIMEDOUT|timed out|timeout/i.test(text)) {
    err = storeError("ETIMEDOUT", op, host, "the registry stopped answering; try again later");
  } else {
    err = storeError("ECONNRESET", op, host, `the connection failed (${message}); the registry went away or a proxy cut it`);
  }
  Object.assign(err, { cause: e, network: true });
  return err;
}
