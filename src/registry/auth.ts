/**
 * Answering a registry's 401: Basic credentials sent as they are, or a Bearer token
 * fetched from the realm the challenge names (docker's token protocol: `GET
 * realm?service=...&scope=...`, with Basic credentials when there are some), one token
 * per set of scopes, kept until it expires.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { type Challenge, parseChallenges } from "./challenge.ts";
import type { Credentials } from "./credentials.ts";
import { errorDetails } from "./errors.ts";
import { discard, send, type SendContext } from "./http.ts";

/** Tokens live this long when the server does not say (the spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;

function basicHeader(c: Credentials): string {
  const bytes = new TextEncoder().encode(`${c.username}:${c.password}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

/** Scopes sorted and without repeats, so the same set finds the same token. */
function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(" ");
}

/** Authorization for one registry. */
export class Authorizer {
  readonly #creds?: Credentials;
  readonly #ctx: SendContext;
  /** The scheme the registry asked for, once it has. */
  #scheme?: "basic" | "bearer";
  #bearer?: Challenge;
  readonly #tokens = new Map<string, { header: string; expires: number }>();

  constructor(readonly host: string, creds: Credentials | undefined, ctx: SendContext) {
    this.#creds = creds;
    this.#ctx = ctx;
  }

  /** Notes what a 401 asks for (the `/v2/` ping's), without answering yet. */
  learn(res: Response): void {
    const challenges = parseChallenges(res.headers.get("www-authenticate"));
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer?.params.realm) {
      this.#scheme = "bearer";
      this.#bearer = bearer;
    } else if (challenges.some((c) => c.scheme === "basic")) {
      this.#scheme = "basic";
    }
  }

  /** The header to send for `scopes`, fetching a token first when the registry wants tokens. */
  async header(scopes: string[]): Promise<string | undefined> {
    if (this.#scheme === "basic") return this.#creds && basicHeader(this.#creds);
    if (this.#scheme !== "bearer") return undefined;
    const cached = this.#tokens.get(scopeKey(scopes));
    if (cached && cached.expires > Date.now()) return cached.header;
    return await this.#token(scopes);
  }

  /**
   * Learns from a 401 what the registry wants and returns the header to try again with;
   * fails with EACCES, naming the realm, when there is nothing better to send than `sent`.
   */
  async answer(res: Response, scopes: string[], sent: string | undefined): Promise<string> {
    const challenges = parseChallenges(res.headers.get("www-authenticate"));
    await discard(res);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    if (bearer?.params.realm) {
      this.#scheme = "bearer";
      this.#bearer = bearer;
      const wanted = [...scopes, ...(bearer.params.scope?.split(" ").filter(Boolean) ?? [])];
      const header = await this.#token(wanted, true);
      // The registry may ask per request for other scopes; remember the token for ours too.
      this.#tokens.set(scopeKey(scopes), { header, expires: Date.now() + DEFAULT_TOKEN_SECONDS * 1000 });
      return header;
    }
    if (basic) {
      this.#scheme = "basic";
      if (!this.#creds) throw storeError("EACCES", "auth", this.host, `the registry${realmOf(basic)} needs credentials; ${HOW_TO_LOG_IN}`);
      const header = basicHeader(this.#creds);
      if (header === sent) throw this.refused(challenges);
      return header;
    }
    throw storeError("EACCES", "auth", this.host,
      `the registry answered 401 with ${challenges.length ? `a challenge thinstack cannot answer (${challenges.map((c) => c.scheme).join(", ")})` : "no WWW-Authenticate challenge"}`);
  }

  /** The error for a 401 that came although the registry's challenge was answered. */
  refused(challenges: Challenge[], scopes: string[] = []): Error {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer) {
      const wanted = scopeKey([...scopes, ...(bearer.params.scope?.split(" ").filter(Boolean) ?? [])]);
      return storeError("EACCES", "auth", this.host,
        `the registry refused the token from realm '${bearer.params.realm}' for ${wanted || "this request"}` +
        `${bearer.params.error ? ` (${bearer.params.error})` : ""}; ${this.#who()} may lack the rights (pull, push) on the repository`);
    }
    const basic = challenges.find((c) => c.scheme === "basic");
    return storeError("EACCES", "auth", this.host,
      `the registry${basic ? realmOf(basic) : ""} refused the credentials of ${this.#who()}; check them`);
  }

  #who(): string {
    return this.#creds ? `user '${this.#creds.username}'` : "an anonymous user";
  }

  /** A fresh token for `scopes` from the realm; `renew` skips the cache. */
  async #token(scopes: string[], renew = false): Promise<string> {
    const key = scopeKey(scopes);
    const cached = this.#tokens.get(key);
    if (!renew && cached && cached.expires > Date.now()) return cached.header;
    const { realm, service } = this.#bearer!.params;
    const url = new URL(realm);
    if (service) url.searchParams.set("service", service);
    for (const s of key.split(" ").filter(Boolean)) url.searchParams.append("scope", s);
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.#creds) headers.authorization = basicHeader(this.#creds);
    const res = await send(url, { method: "GET", headers, idempotent: true }, { ...this.#ctx, op: "auth", host: realm });
    if (res.status === 401 || res.status === 403) {
      const details = await errorDetails(res);
      throw storeError("EACCES", "auth", realm,
        this.#creds
          ? `the token server refused the credentials of user '${this.#creds.username}' for ${key} (HTTP ${res.status}${details ? `: ${details}` : ""}); check them`
          : `the token server wants credentials for ${key} (HTTP ${res.status}); ${HOW_TO_LOG_IN}`);
    }
    if (!res.ok) {
      const details = await errorDetails(res);
      throw storeError("EIO", "auth", realm, `the token server answered HTTP ${res.status}${details ? ` (${details})` : ""}`);
    }
    let body: { token?: string; access_token?: string; expires_in?: number };
    try {
      body = await res.json() as typeof body;
    } catch {
      throw storeError("EPROTO", "auth", realm, "the token server's answer is not JSON; is the realm a token server?");
    }
    const token = body.token ?? body.access_token;
    if (!token) throw storeError("EPROTO", "auth", realm, "the token server's answer holds no token");
    const seconds = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    const header = `Bearer ${token}`;
    // Renew a little early, so a token does not expire between check and use.
    this.#tokens.set(key, { header, expires: Date.now() + Math.max(seconds - 10, seconds / 2) * 1000 });
    return header;
  }
}

function realmOf(c: Challenge): string {
  return c.params.realm ? ` (realm '${c.params.realm}')` : "";
}

const HOW_TO_LOG_IN = "pass --creds USER:PASSWORD, or log in with docker login so ~/.docker/config.json holds them";
