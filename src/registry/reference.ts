/**
 * Image references as docker and the distribution project spell them:
 * `[host[:port]/]path[:tag][@digest]`. A name without a registry is Docker Hub's
 * (`busybox` is `docker.io/library/busybox:latest`), as in distribution's
 * `reference.ParseNormalizedNamed`.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { parseDigest } from "../interchange/digest.ts";

/** A parsed image reference. */
export interface Reference {
  /** The registry as named: `docker.io`, `127.0.0.1:5000`, `ghcr.io`. */
  registry: string;
  /** The repository inside it: `library/busybox`, `team/app`. */
  repository: string;
  /** The tag; `latest` when the reference gives neither tag nor digest. */
  tag?: string;
  /** The manifest digest, when the reference pins one. */
  digest?: string;
}

/** Docker Hub's name in references, and where its API answers. */
export const DOCKER_HUB = "docker.io";
const DOCKER_HUB_API = "registry-1.docker.io";

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST = /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/;

function bad(text: string, why: string): Error {
  return storeError("EINVAL", "reference", text, `${why}; a reference is [host[:port]/]name[:tag][@sha256:...], such as 127.0.0.1:5000/app:1 or busybox`);
}

/**
 * Parses `text`. The first path component is a registry when it holds a `.` or a `:`,
 * is `localhost`, or has capitals (as docker decides).
 *
 * @example
 * ```ts
 * import { parseReference } from "./reference.ts";
 * console.log(parseReference("busybox")); // { registry: "docker.io", repository: "library/busybox", tag: "latest" }
 * ```
 */
export function parseReference(text: string): Reference {
  let rest = text.trim();
  if (!rest) throw bad(text, "the reference is empty");
  let digest: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    parseDigest(digest, text);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(text, `'${tag}' is not a tag (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-')`);
  }
  const slash = rest.indexOf("/");
  const first = slash < 0 ? "" : rest.slice(0, slash);
  let registry = DOCKER_HUB;
  let path = rest;
  if (first && (/[.:]/.test(first) || first === "localhost" || first !== first.toLowerCase())) {
    registry = first;
    path = rest.slice(slash + 1);
    if (!HOST.test(registry)) throw bad(text, `'${registry}' is not a registry host[:port]`);
  }
  if (registry === "index.docker.io") registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !path.includes("/")) path = `library/${path}`;
  for (const c of path.split("/")) {
    if (!COMPONENT.test(c)) throw bad(text, `'${c}' is not a repository name component (lowercase letters and digits, joined by '.', '_', '__' or '-')`);
  }
  if (path.length > 255) throw bad(text, "the repository name is longer than 255 characters");
  return { registry, repository: path, ...(tag === undefined && digest === undefined ? { tag: "latest" } : tag === undefined ? {} : { tag }), ...(digest ? { digest } : {}) };
}

/** Where the registry's API answers: `host[:port]` (Docker Hub's is not docker.io). */
export function endpointOf(ref: Pick<Reference, "registry">): string {
  return ref.registry === DOCKER_HUB ? DOCKER_HUB_API : ref.registry;
}

/** The repository with its registry, `host/name`: how records name where blobs are. */
export function repositoryOf(ref: Pick<Reference, "registry" | "repository">): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The repository as docker shows it: Docker Hub's without `docker.io/` and `library/`. */
export function familiarRepository(ref: Pick<Reference, "registry" | "repository">): string {
  if (ref.registry !== DOCKER_HUB) return repositoryOf(ref);
  return ref.repository.startsWith("library/") ? ref.repository.slice("library/".length) : ref.repository;
}

/** The reference as docker shows it: `busybox:latest`, `127.0.0.1:5000/app@sha256:…`. */
export function formatReference(ref: Reference): string {
  return `${familiarRepository(ref)}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** Splits `host/name` (as {@linkcode repositoryOf} writes it) back into registry and repository. */
export function splitRepository(repo: string): { registry: string; repository: string } {
  const slash = repo.indexOf("/");
  return { registry: repo.slice(0, slash), repository: repo.slice(slash + 1) };
}
