/**
 * Reading an OCI image layout (image-spec image-layout.md): `oci-layout`, `index.json`,
 * then manifest, config and layers under `blobs/`, following nested indexes and picking
 * one manifest by name or platform. Every document is read whole, so each is bounded by
 * `METADATA_LIMIT` (limits.ts), and nested indexes are bounded together.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import type { ImageFiles } from "./imagefiles.ts";
import { MetadataBudget } from "./limits.ts";
import { blobPath, checkDiffIds, type ImageSource, readJson } from "./imagesource.ts";
import { type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, MediaType, type Platform, REF_NAME } from "./spec.ts";

/** How to choose among an index's manifests. */
export interface ImageSelector {
  /** A ref name (`org.opencontainers.image.ref.name`) or, for docker-save, a RepoTag. */
  name?: string;
  /** Wanted platform when several manifests remain; default linux/amd64. */
  platform?: Platform;
}

/** The platform chosen when an index offers several and none is asked for. */
export const DEFAULT_PLATFORM: Platform = { os: "linux", architecture: "amd64" };

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerList]);
/** Nested indexes followed before giving up. */
const MAX_DEPTH = 8;

interface Candidate {
  desc: Descriptor;
  /** The ref name of the top-level descriptor it came from. */
  name?: string;
}

/**
 * The manifests `index` leads to. Nested indexes are read against `budget`: each is
 * bounded on its own, and this bounds them together, so that an index naming the same
 * large nested index many times cannot multiply what is held.
 */
async function manifestsOf(files: ImageFiles, index: ImageIndex, name: string | undefined, depth: number, budget: MetadataBudget): Promise<Candidate[]> {
  if (depth > MAX_DEPTH) throw storeError("EINVAL", "import", files.where, "image indexes nest too deeply");
  const out: Candidate[] = [];
  for (const desc of index.manifests ?? []) {
    const ref = depth === 0 ? desc.annotations?.[REF_NAME] : name;
    if (INDEX_TYPES.has(desc.mediaType)) {
      const path = blobPath(desc.digest);
      const nested = await readJson<ImageIndex>(files, path, desc);
      budget.spend(nested.bytes.length, `${files.where}:${path}`);
      out.push(...await manifestsOf(files, nested.value, ref, depth + 1, budget));
    } else {
      out.push({ desc, name: ref });
    }
  }
  return out;
}

function samePlatform(p: Platform | undefined, want: Platform): boolean {
  return !!p && p.os === want.os && p.architecture === want.architecture && (!want.variant || p.variant === want.variant);
}

function describe(c: Candidate): string {
  const p = c.desc.platform;
  return `${c.name ?? c.desc.digest.slice(0, 19)}${p ? ` (${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""})` : ""}`;
}

async function choose(files: ImageFiles, all: Candidate[], sel: ImageSelector): Promise<Candidate> {
  let cands = all;
  if (sel.name !== undefined) {
    cands = all.filter((c) => c.name === sel.name || (c.name && sel.name!.endsWith(`:${c.name}`)));
    if (!cands.length) {
      throw storeError("ENOENT", "import", files.where, `no image named '${sel.name}'; it holds: ${all.map(describe).join(", ") || "nothing"}`);
    }
  }
  if (cands.length === 1) return cands[0];
  const want = sel.platform ?? DEFAULT_PLATFORM;
  const matching: Candidate[] = [];
  for (const c of cands) {
    // A descriptor without a platform: ask its config.
    let p = c.desc.platform;
    if (!p) {
      const m = await readJson<ImageManifest>(files, blobPath(c.desc.digest), c.desc);
      const cfg = await readJson<ImageConfig>(files, blobPath(m.value.config.digest), m.value.config);
      p = { os: cfg.value.os ?? "", architecture: cfg.value.architecture ?? "", variant: cfg.value.variant };
    }
    if (samePlatform(p, want)) matching.push(c);
  }
  if (!matching.length) {
    throw storeError("ENOENT", "import", files.where, `no manifest for ${want.os}/${want.architecture}; it holds: ${cands.map(describe).join(", ")}`);
  }
  // Several images (not several variants of one) for this platform: guessing would be wrong.
  if (new Set(matching.map((c) => c.name)).size > 1) {
    throw storeError("EINVAL", "import", files.where, `the layout holds several images (${matching.map(describe).join(", ")}); name one`);
  }
  return matching[0];
}

/**
 * Reads the image an OCI layout holds: by ref name when `sel.name` is given, else the
 * only manifest, else the one for the wanted platform (linux/amd64 by default). Index,
 * manifest and config are checked against their digests and sizes here; layers are
 * checked while they are imported.
 */
export async function readOciLayout(files: ImageFiles, sel: ImageSelector = {}): Promise<ImageSource> {
  const layout = await readJson<{ imageLayoutVersion?: string }>(files, "oci-layout");
  if (typeof layout.value.imageLayoutVersion !== "string") {
    throw storeError("EINVAL", "import", `${files.where}:oci-layout`, "not an OCI image layout (no imageLayoutVersion)");
  }
  const index = await readJson<ImageIndex>(files, "index.json");
  const budget = new MetadataBudget("the image indexes read so far");
  budget.spend(index.bytes.length, `${files.where}:index.json`);
  const chosen = await choose(files, await manifestsOf(files, index.value, undefined, 0, budget), sel);
  const manifest = await readJson<ImageManifest>(files, blobPath(chosen.desc.digest), chosen.desc);
  const m = manifest.value;
  if (!m?.config?.digest || !Array.isArray(m.layers)) {
    throw storeError("EINVAL", "import", `${files.where}:${blobPath(chosen.desc.digest)}`, "not an image manifest");
  }
  const config = await readJson<ImageConfig>(files, blobPath(m.config.digest), m.config);
  const diffIds = checkDiffIds(config.value, m.layers.length, `${files.where}:${blobPath(m.config.digest)}`);
  return {
    format: "oci",
    name: chosen.name,
    config: config.value,
    configBytes: config.bytes,
    configDigest: m.config.digest,
    manifestDigest: chosen.desc.digest,
    layers: m.layers.map((d, i) => ({ path: blobPath(d.digest), digest: d.digest, size: d.size, diffId: diffIds[i], mediaType: d.mediaType })),
    files,
  };
}
