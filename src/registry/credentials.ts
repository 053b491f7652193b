/**
 * Registry credentials: `user:pass` as typed (`--creds`), or the `auths` section of
 * docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
 * where `docker login` stores `auth`, base64 of `user:pass`. Credential helpers
 * (`credsStore`, `credHelpers`) are not run.
 *
 * @module
 */
import fsp from "node:fs/promises";
import os from "node:os";
import nodePath from "node:path";
import process from "node:process";
import { hasCode, storeError } from "../common/errors.ts";
import { DOCKER_HUB } from "./reference.ts";

/** A user name and password (or token) for Basic authentication. */
export interface Credentials {
  /** The user name. */
  username: string;
  /** The password or access token. */
  password: string;
}

/**
 * Parses `user:pass` (split at the first colon; the password may hold colons).
 *
 * @example
 * ```ts
 * import { parseCredentials } from "./credentials.ts";
 * console.log(parseCredentials("ci:s3:cret").password); // s3:cret
 * ```
 */
export function parseCredentials(text: string): Credentials {
  const i = text.indexOf(":");
  if (i <= 0) throw storeError("EINVAL", "credentials", undefined, "credentials are USER:PASSWORD (the user name is missing or there is no colon)");
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

/** Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(): string {
  const dir = process.env.DOCKER_CONFIG || nodePath.join(os.homedir(), ".docker");
  return nodePath.join(dir, "config.json");
}

/** The host an `auths` key names: keys may be `host`, `https://host`, `https://host/v1/`. */
function keyHost(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
}

const HUB_KEYS = new Set([DOCKER_HUB, "index.docker.io", "registry-1.docker.io"]);

/**
 * The credentials docker's config holds for `registry` (as a reference names it), or
 * undefined. A missing file is no credentials; an unreadable or malformed one fails.
 */
export async function dockerCredentials(registry: string, path = dockerConfigPath()): Promise<Credentials | undefined> {
  let text: string;
  try {
    text = await fsp.readFile(path, "utf8");
  } catch (e) {
    if (hasCode(e, "ENOENT") || hasCode(e, "ENOTDIR")) return undefined;
    throw e;
  }
  let config: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
  try {
    config = JSON.parse(text);
  } catch {
    throw storeError("EINVAL", "credentials", path, "the docker config is not valid JSON; fix it or pass --creds");
  }
  const want = registry.toLowerCase();
  const hub = HUB_KEYS.has(want);
  for (const [key, entry] of Object.entries(config.auths ?? {})) {
    const host = keyHost(key);
    if (host !== want && !(hub && HUB_KEYS.has(host))) continue;
    if (entry?.auth) {
      try {
        return parseCredentials(new TextDecoder().decode(Uint8Array.from(atob(entry.auth.trim()), (c) => c.charCodeAt(0))));
      } catch {
        throw storeError("EINVAL", "credentials", path, `the auth of '${key}' is not base64 of USER:PASSWORD; log in again or pass --creds`);
      }
    }
    if (entry?.username && entry.password !== undefined) return { username: entry.username, password: entry.password };
  }
  return undefined;
}
