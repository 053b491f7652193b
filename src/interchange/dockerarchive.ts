/**
 * Reading `docker save` archives: the manifest.json format (Docker 1.10 and later,
 * including Docker 25's, whose layers live under `blobs/sha256/`) and the older format
 * with only `repositories` and a chain of `<id>/json` + `<id>/layer.tar`. The JSON files
 * are read whole, each bounded by `METADATA_LIMIT` (limits.ts), the chain's together.
 *
 * @module
 */
import { storeError } from "../common/errors.ts";
import { decompressed } from "./compression.ts";
import { Hasher, sha256, type Digest } from "./digest.ts";
import type { ImageFiles } from "./imagefiles.ts";
import { MetadataBudget } from "./limits.ts";
import { checkDiffIds, type ImageSource, type LayerBlob, readJson } from "./imagesource.ts";
import type { ImageSelector } from "./ocilayout.ts";
import { byteChunks } from "./source.ts";
import type { DockerManifestEntry, History, ImageConfig } from "./spec.ts";

/** Whether `tag` is what `name` asks for (`busybox` means `busybox:latest`). */
function tagMatches(tag: string, name: string): boolean {
  return tag === name || tag === `${name}:latest`;
}

/** The digest a docker-save member's name states: `blobs/sha256/<hex>`, `<hex>.json`, `sha256:<hex>`. */
function digestInName(path: string): Digest | undefined {
  const m = /(?:^|\/)blobs\/(sha256)\/([a-f0-9]{64})$/.exec(path) ?? /^(?:(sha256):)?([a-f0-9]{64})\.json$/.exec(path) ??
    /^(sha256):([a-f0-9]{64})$/.exec(path);
  return m ? `sha256:${m[2]}` : undefined;
}

async function readManifestFormat(files: ImageFiles, entries: DockerManifestEntry[], sel: ImageSelector): Promise<ImageSource> {
  const where = `${files.where}:manifest.json`;
  if (!Array.isArray(entries) || entries.length === 0) throw storeError("EINVAL", "import", where, "manifest.json lists no image");
  const tags = (e: DockerManifestEntry) => e.RepoTags ?? [];
  let entry: DockerManifestEntry | undefined;
  if (sel.name !== undefined) {
    entry = entries.find((e) => tags(e).some((t) => tagMatches(t, sel.name!)));
    if (!entry && entries.length === 1 && tags(entries[0]).length === 0) entry = entries[0];
  } else if (entries.length === 1) {
    entry = entries[0];
  } else {
    throw storeError("EINVAL", "import", where, `the archive holds ${entries.length} images (${entries.map((e) => tags(e).join("|") || e.Config).join(", ")}); name one`);
  }
  if (!entry) throw storeError("ENOENT", "import", where, `no image tagged '${sel.name}'; it holds: ${entries.flatMap(tags).join(", ")}`);
  if (typeof entry.Config !== "string" || !Array.isArray(entry.Layers)) throw storeError("EINVAL", "import", where, "malformed manifest.json entry");
  const configDigest = digestInName(entry.Config);
  const config = await readJson<ImageConfig>(files, entry.Config, { digest: configDigest });
  const diffIds = checkDiffIds(config.value, entry.Layers.length, `${files.where}:${entry.Config}`);
  const layers: LayerBlob[] = entry.Layers.map((path, i) => {
    const source = entry.LayerSources?.[diffIds[i]];
    return { path, diffId: diffIds[i], digest: source?.digest ?? digestInName(path), size: source?.size, mediaType: source?.mediaType };
  });
  return {
    format: "docker",
    name: sel.name ?? tags(entry)[0],
    config: config.value,
    configBytes: config.bytes,
    configDigest: configDigest ?? sha256(config.bytes),
    layers,
    files,
  };
}

/** The v1 image JSON of the old format (only what is used). */
interface V1Json {
  id?: string;
  parent?: string;
  created?: string;
  architecture?: string;
  os?: string;
  author?: string;
  config?: Record<string, unknown>;
  container_config?: { Cmd?: string[] | null };
}

/** The DiffID of a layer the format gives none for: its uncompressed bytes, hashed. */
async function diffIdOf(files: ImageFiles, path: string): Promise<Digest> {
  const h = new Hasher();
  for await (const _ of decompressed(byteChunks(files.open(path)), { plain: (c) => h.update(c) }, `${files.where}:${path}`)) { /* hashing */ }
  return h.digest();
}

async function readLegacyFormat(files: ImageFiles, sel: ImageSelector): Promise<ImageSource> {
  const where = `${files.where}:repositories`;
  const repos = (await readJson<Record<string, Record<string, string>>>(files, "repositories")).value;
  const refs = Object.entries(repos ?? {}).flatMap(([repo, tags]) => Object.entries(tags ?? {}).map(([tag, id]) => ({ name: `${repo}:${tag}`, id })));
  const ids = new Set(refs.map((r) => r.id));
  const ref = sel.name !== undefined ? refs.find((r) => tagMatches(r.name, sel.name!)) : ids.size === 1 ? refs[0] : undefined;
  if (!ref) {
    throw storeError(sel.name !== undefined ? "ENOENT" : "EINVAL", "import", where, `${sel.name !== undefined ? `no image tagged '${sel.name}'` : "several images; name one"}: ${refs.map((r) => r.name).join(", ")}`);
  }
  // Walk from the top layer down through `parent`.
  const chain: { id: string; json: V1Json }[] = [];
  // Each layer's JSON is bounded on its own; a long chain of them is bounded together.
  const budget = new MetadataBudget("the layer JSON files read so far");
  for (let id: string | undefined = ref.id; id; ) {
    if (!/^[a-f0-9]{64}$/.test(id) || chain.some((c) => c.id === id)) throw storeError("EINVAL", "import", where, `bad layer chain at '${id}'`);
    const read = await readJson<V1Json>(files, `${id}/json`);
    budget.spend(read.bytes.length, `${files.where}:${id}/json`);
    const json: V1Json = read.value;
    chain.unshift({ id, json });
    id = json.parent;
  }
  const diffIds: Digest[] = [];
  for (const { id } of chain) diffIds.push(await diffIdOf(files, `${id}/layer.tar`));
  const top = chain[chain.length - 1].json;
  const history: History[] = chain.map(({ json }) => ({ created: json.created, created_by: (json.container_config?.Cmd ?? []).join(" ") }));
  const config: ImageConfig = {
    architecture: top.architecture ?? "amd64",
    os: top.os ?? "linux",
    ...(top.created ? { created: top.created } : {}),
    ...(top.author ? { author: top.author } : {}),
    config: top.config ?? {},
    rootfs: { type: "layers", diff_ids: diffIds },
    history,
  };
  const configBytes = new TextEncoder().encode(JSON.stringify(config));
  return {
    format: "docker-legacy",
    name: sel.name ?? ref.name,
    config,
    configBytes,
    configDigest: sha256(configBytes),
    layers: chain.map(({ id }, i) => ({ path: `${id}/layer.tar`, diffId: diffIds[i] })),
    files,
  };
}

/**
 * Reads the image a `docker save` archive holds: the one tagged `sel.name`, or the only
 * one. The config is checked against the digest its file name states; layers are
 * checked against their DiffIDs while imported. The old format records no DiffIDs, so
 * they are computed here from the layers.
 */
export async function readDockerArchive(files: ImageFiles, sel: ImageSelector = {}): Promise<ImageSource> {
  if (await files.has("manifest.json")) {
    const entries = (await readJson<DockerManifestEntry[]>(files, "manifest.json")).value;
    return await readManifestFormat(files, entries, sel);
  }
  return await readLegacyFormat(files, sel);
}
