/**
 * Registry: pulling images from and pushing them to OCI registries (the distribution
 * spec over `fetch`, Node and Deno alike): references, the `/v2/` ping, Bearer and Basic
 * auth, manifests and indexes for a platform, resumable blob downloads streamed into
 * the store, blob HEAD, cross-repository mounts and chunked uploads, retried with
 * backoff.
 *
 * The store plugs in as for imports: a {@linkcode LayerHost} and an {@linkcode ImageCatalog}.
 *
 * @example
 * ```ts ignore
 * import { pull, push } from "./mod.ts";
 * await pull(host, catalog, "127.0.0.1:5000/base:1", { plainHttp: true });
 * await push(host, catalog, "app:1", "127.0.0.1:5000/app:1", { plainHttp: true });
 * ```
 *
 * @module
 */
import type { ImageCatalog, LayerHost } from "../interchange/host.ts";
export type { ImageCatalog, LayerHost };
export { type ClientOptions, RegistryClient } from "./client.ts";
export { type Credentials, dockerConfigPath, dockerCredentials, parseCredentials } from "./credentials.ts";
export { formatPlatform, hostPlatform, parsePlatform, platformMatches } from "./platform.ts";
export type { TransferEvent, TransferState } from "./progress.ts";
export { pull, type PullOptions, type PullResult } from "./pull.ts";
export { push, type PushedLayer, type PushOptions, type PushResult } from "./push.ts";
export { DOCKER_HUB, formatReference, parseReference, type Reference, repositoryOf } from "./reference.ts";
export type { RetryPolicy } from "./retry.ts";
