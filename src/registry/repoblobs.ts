/**
 * What a repository holds, for a push: blob `HEAD`, cross-repository mount (`POST
 * ?mount=&from=`), and giving up an upload the registry opened.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { RegistryClient } from "./client.ts";
import { responseError } from "./errors.ts";
import { discard } from "./http.ts";

/** The repository blobs go to. */
export interface UploadTarget {
  /** Repository path in the registry. */
  repository: string;
  /** Token scopes for pushing there. */
  scopes: string[];
  /** How errors name what is pushed. */
  what: string;
}

/** The URL a registry's answer names with `Location`, resolved against its base. */
export function location(res: Response, client: RegistryClient, what: string): URL {
  const loc = res.headers.get("location");
  if (!loc) throw storeError("EPROTO", "push", what, `the registry answered ${res.status} with no Location for the upload`);
  return client.url(loc);
}

/** Whether the repository has blob `digest`. */
export async function hasBlob(client: RegistryClient, t: UploadTarget, digest: string): Promise<boolean> {
  const res = await client.request("HEAD", `/v2/${t.repository}/blobs/${digest}`, { scopes: t.scopes, op: "push", what: t.what });
  await discard(res);
  if (res.ok) return true;
  if (res.status === 404) return false;
  throw await responseError(res, "push", `${t.what} ${digest}`);
}

/**
 * Asks the registry to mount blob `digest` from repository `from` (its path there):
 * `mounted`, or the upload it opened instead (201 or 202, as the spec says), or neither
 * when it refused.
 */
export async function mountBlob(client: RegistryClient, t: UploadTarget, digest: string, from: string): Promise<{ mounted: boolean; session?: URL }> {
  const path = `/v2/${t.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`;
  const res = await client.request("POST", path, { scopes: [...t.scopes, `repository:${from}:pull`], op: "push", what: t.what });
  await discard(res);
  if (res.status === 201) return { mounted: true };
  if (res.status === 202 && res.headers.get("location")) return { mounted: false, session: location(res, client, t.what) };
  return { mounted: false };
}

/** Gives up an upload the registry opened (a mount's that is not used). */
export async function cancelUpload(client: RegistryClient, t: UploadTarget, session: URL): Promise<void> {
  const res = await client.request("DELETE", session, { scopes: t.scopes, op: "push", what: t.what }).catch(() => undefined);
  if (res) await discard(res);
}

